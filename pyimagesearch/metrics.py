"""Per-image segmentation metrics: IoU, Dice and the TGS competition score.

All three treat an image whose true mask is empty the way the competition does:
predicting nothing there is perfect (1), predicting any salt is wrong (0).
"""
import numpy as np
import torch

# the competition's IoU thresholds 0.50, 0.55, ..., 0.95 as twentieths, so the
# comparison "IoU > t" is made exactly in integers: inter/union > k/20 <=>
# 20*inter > k*union. Floats would decide IoU = 0.7 against a threshold
# that is 0.7000000000000001 or 0.6999999999999999 depending on how it was built.
_THRESHOLDS_IN_TWENTIETHS = torch.arange(10, 20)


def _flat_counts(pred, target):
    pred = pred.bool().flatten(1)
    target = target.bool().flatten(1)
    inter = (pred & target).sum(1)
    pred_area = pred.sum(1)
    target_area = target.sum(1)
    return inter, pred_area, target_area


def iou_per_image(pred, target):
    """Intersection over union per image; 1 where both masks are empty."""
    inter, pred_area, target_area = _flat_counts(pred, target)
    union = pred_area + target_area - inter
    return torch.where(union == 0, 1.0, inter / union.clamp(min=1))


def dice_per_image(pred, target):
    """2|A&B| / (|A|+|B|) per image; 1 where both masks are empty."""
    inter, pred_area, target_area = _flat_counts(pred, target)
    total = pred_area + target_area
    return torch.where(total == 0, 1.0, 2 * inter / total.clamp(min=1))


def competition_score_per_image(pred, target):
    """The TGS Salt score of each image.

    Empty truth: 1 if the prediction is empty too, else 0. Otherwise the share
    of the thresholds 0.50, 0.55, ..., 0.95 that the IoU strictly exceeds.
    """
    inter, pred_area, target_area = _flat_counts(pred, target)
    union = pred_area + target_area - inter
    thresholds = _THRESHOLDS_IN_TWENTIETHS.to(union.device)
    hits = (20 * inter[:, None] > thresholds * union[:, None]).float().mean(1)
    return torch.where(target_area == 0, (pred_area == 0).float(), hits)


# kinds of image by the share of their pixels that is salt, up to each bound
COVERAGE_KINDS = {"empty": 0.0, "small": 0.1, "medium": 0.5, "large": 1.0}


def coverage_kind(salt_share):
    """The COVERAGE_KINDS name of an image whose salt covers ``salt_share`` of it."""
    return next(kind for kind, bound in COVERAGE_KINDS.items() if salt_share <= bound)


METRICS = {"iou": iou_per_image, "dice": dice_per_image, "score": competition_score_per_image}


class MetricTotals:
    """Running sums of per-image metrics over an epoch; ``means()`` at the end.

    Sums are kept as one tensor on the model's device so that adding a batch
    never waits for the device, and so that distributed runs can add up the
    totals of every process in one all-reduce.
    """

    NAMES = ("loss", *METRICS)

    def __init__(self, device="cpu"):
        self.sums = torch.zeros(len(self.NAMES) + 1, dtype=torch.float64, device=device)

    def add(self, loss, pred, target):
        """``loss``: the batch's mean loss per image; pred/target: boolean masks."""
        count = pred.shape[0]
        values = [loss.detach().double() * count]
        values += [fn(pred, target).double().sum() for fn in METRICS.values()]
        values.append(torch.tensor(float(count), dtype=torch.float64, device=self.sums.device))
        self.sums += torch.stack(values)

    @property
    def count(self):
        return int(self.sums[-1].item())

    def means(self):
        sums = self.sums.tolist()
        count = sums[-1]
        if count == 0:
            raise ValueError("no images were evaluated")
        return {name: total / count for name, total in zip(self.NAMES, sums)}


def class_counts(pred, target, num_classes):
    """(intersections, predicted areas, true areas), a row each with one
    column per class, summed over a batch of class-index masks."""
    pred, target = pred.flatten().long(), target.flatten().long()
    return torch.stack([torch.bincount(target[pred == target], minlength=num_classes),
                        torch.bincount(pred, minlength=num_classes),
                        torch.bincount(target, minlength=num_classes)])


def class_metrics(counts):
    """IoU and Dice per class from ``class_counts`` rows; NaN for a class
    neither predicted nor present, which has nothing to score."""
    inter, pred_area, target_area = counts.double()
    union = pred_area + target_area - inter
    nothing = union == 0
    iou = torch.where(nothing, torch.nan, inter / union.clamp(min=1))
    dice = torch.where(nothing, torch.nan, 2 * inter / (pred_area + target_area).clamp(min=1))
    return iou, dice


class ClassTotals:
    """MetricTotals for several classes: running sums of the loss and of each
    class's pixel counts, all in one tensor ``sums`` that processes add up."""

    def __init__(self, num_classes, device="cpu"):
        self.num_classes = num_classes
        self.sums = torch.zeros(2 + 3 * num_classes, dtype=torch.float64, device=device)

    def add(self, loss, pred, target):
        """``loss``: the batch's mean loss per image; pred/target: class indices."""
        counts = class_counts(pred, target, self.num_classes).double().flatten()
        count = torch.tensor([float(len(pred))], dtype=torch.float64, device=self.sums.device)
        self.sums += torch.cat([loss.detach().double().reshape(1) * len(pred), count, counts])

    @property
    def count(self):
        return int(self.sums[1].item())

    def means(self):
        """Loss per image; IoU and Dice per class and their means over the
        classes there were ("score" is the mean IoU, which ranks epochs)."""
        if self.count == 0:
            raise ValueError("no images were evaluated")
        iou, dice = class_metrics(self.sums[2:].reshape(3, self.num_classes).cpu())
        return {"loss": self.sums[0].item() / self.count, "iou": iou.nanmean().item(),
                "dice": dice.nanmean().item(), "score": iou.nanmean().item(),
                "iou_per_class": iou.tolist(), "dice_per_class": dice.tolist()}


def score_shortfall(scores, has_salt, predicted_salt):
    """Where a mean competition score falls short of 1, by kind of image.

    ``scores``, ``has_salt`` (the truth holds salt) and ``predicted_salt``
    (the prediction does) are per-image sequences. Returns, for "no salt",
    "salt missed" (salt in the truth, nothing predicted) and "salt found",
    (number of images, their mean score, what they take off the mean over all
    images); the three shares add up to 1 - the mean score.
    """
    scores = torch.as_tensor(scores, dtype=torch.float64)
    has_salt = torch.as_tensor(has_salt, dtype=torch.bool)
    predicted_salt = torch.as_tensor(predicted_salt, dtype=torch.bool)
    kinds = {"no salt": ~has_salt, "salt missed": has_salt & ~predicted_salt,
             "salt found": has_salt & predicted_salt}
    shortfall = {}
    for kind, chosen in kinds.items():
        count = int(chosen.sum())
        mean = scores[chosen].mean().item() if count else float("nan")
        shortfall[kind] = (count, mean, (1 - scores[chosen]).sum().item() / len(scores))
    return shortfall


def summarize(columns):
    """The means of per-image metrics (``columns`` as ``inference.evaluate_pairs``
    gives them), the standard error of the mean score, and its shortfall."""
    scores = torch.tensor(columns["score"], dtype=torch.float64)
    # the spread of the mean that comes from which images happen to be in the split
    standard_error = (scores.std() / len(scores) ** 0.5).item() if len(scores) > 1 else 0.0
    return {"count": len(scores),
            "means": {name: float(np.mean(columns[name])) for name in METRICS},
            "standard_error": standard_error,
            "shortfall": score_shortfall(scores, np.array(columns["salt_pixels"]) > 0,
                                         np.array(columns["predicted_pixels"]) > 0)}
