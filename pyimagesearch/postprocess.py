"""From salt probabilities to masks, and choosing how on validation data.

One wrong pixel on an image without salt costs that whole image in the
competition score (39% of TGS images hold no salt), so besides the threshold a
mask must cover at least ``min_area`` pixels to be kept; a smaller one is
taken for noise and the image called empty. A blank image (one constant
value: 80 of the TGS images) shows nothing to segment and is called empty.
"""
import dataclasses

import torch

from pyimagesearch.metrics import competition_score_per_image

THRESHOLDS = tuple(round(0.30 + 0.05 * step, 2) for step in range(9))  # 0.30 ... 0.70
MIN_AREAS = (0, 5, 10, 20, 30, 40, 60, 80, 100, 150, 200)


@dataclasses.dataclass(frozen=True)
class PredictionRules:
    """How a model's probabilities become masks; stored in its file as a dict.

    ``threshold``: a pixel is salt above this probability. ``min_area``: a
    mask with fewer salt pixels (at the network's input size) is emptied.
    ``tta``: average each prediction with that of the mirrored image.
    """
    threshold: float
    min_area: float
    tta: bool

    @classmethod
    def for_model(cls, settings, metadata=None):
        """The rules stored with a model (tuned after training) where it has
        them, the settings' otherwise; a setting given as a flag always wins."""
        stored = (metadata or {}).get("prediction", {})
        values = {}
        for field, name in (("threshold", "THRESHOLD"), ("min_area", "MIN_SALT_AREA"),
                            ("tta", "TTA")):
            given = name in getattr(settings, "GIVEN", ())
            values[field] = (getattr(settings, name) if given or field not in stored
                             else stored[field])
        return cls(**values)

    def as_dict(self):
        return dataclasses.asdict(self)


def is_blank(images):
    """Per image of a batch (N,C,H,W): True when every pixel has the same value."""
    flat = images.flatten(1)
    return flat.amin(1) == flat.amax(1)


def to_masks(probabilities, threshold, min_area=0, blank=None):
    """Boolean masks (N,1,H,W) from probabilities (N,1,H,W).

    ``blank``: optional booleans per image whose masks are emptied.
    """
    masks = probabilities > threshold
    keep = masks.flatten(1).sum(1) >= min_area
    if blank is not None:
        keep &= ~blank.to(keep.device)
    return masks & keep[:, None, None, None]


def _score_grid(probabilities, targets, blank, thresholds, min_areas):
    """Summed competition score for every (threshold, min_area) pair."""
    grid = torch.zeros(len(thresholds), len(min_areas), dtype=torch.float64)
    for i, threshold in enumerate(thresholds):
        masks = probabilities > threshold
        areas = masks.flatten(1).sum(1)
        for j, min_area in enumerate(min_areas):
            keep = (areas >= min_area) & ~blank
            scores = competition_score_per_image(masks & keep[:, None, None, None], targets)
            grid[i, j] = scores.double().sum()
    return grid


def tune(probabilities, targets, blank=None, thresholds=THRESHOLDS, min_areas=MIN_AREAS):
    """(threshold, min_area, mean score) with the best mean competition score.

    Ties go to the values nearest the plain rule (threshold 0.5, no minimum
    area), so a grid that does not help changes nothing.
    """
    if blank is None:
        blank = torch.zeros(len(probabilities), dtype=torch.bool)
    grid = _score_grid(probabilities, targets, blank, thresholds, min_areas)
    best = max(((i, j) for i in range(len(thresholds)) for j in range(len(min_areas))),
               key=lambda ij: (round(grid[ij].item(), 6), -abs(thresholds[ij[0]] - 0.5),
                               -min_areas[ij[1]]))
    return thresholds[best[0]], min_areas[best[1]], grid[best].item() / len(probabilities)


def cross_fitted_score(probabilities, targets, blank=None, seed=0):
    """An unbiased estimate of the tuned score: tune on one half of the images,
    score the other half with the values found, and the reverse.

    The score of ``tune`` itself is optimistic, since it picks the best of many
    tries on the very images it reports on. None for fewer than 2 images,
    which leave one half empty.
    """
    if len(probabilities) < 2:
        return None
    if blank is None:
        blank = torch.zeros(len(probabilities), dtype=torch.bool)
    order = torch.randperm(len(probabilities), generator=torch.Generator().manual_seed(seed))
    halves = order[: len(order) // 2], order[len(order) // 2:]
    total = 0.0
    for fit, held in (halves, halves[::-1]):
        threshold, min_area, _ = tune(probabilities[fit], targets[fit], blank[fit])
        masks = to_masks(probabilities[held], threshold, min_area, blank[held])
        total += competition_score_per_image(masks, targets[held]).double().sum().item()
    return total / len(probabilities)
