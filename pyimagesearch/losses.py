"""Training losses for binary segmentation, all taking logits and 0/1 targets.

- "bce": binary cross-entropy, the tutorial's loss; every pixel counts alike.
- "dice": one minus the soft Dice coefficient over the whole batch; it weighs
  the salt area rather than the pixel count, so small salt bodies matter.
- "lovasz": the Lovasz hinge (Berman et al., 2018), a convex surrogate of
  one minus the IoU of each image, which is what the competition score rewards.
- "lovasz_elu": the same with elu(e) + 1 in place of max(e, 0) for each pixel
  error e, a smooth penalty that still moves pixels already past their margin.
Combinations such as "bce+lovasz" add their parts with equal weights.
"""
import torch
import torch.nn.functional as F

LOSSES = ("bce", "dice", "lovasz", "lovasz_elu")


def soft_dice_loss(logits, targets, smooth=1.0):
    """1 - (2 sum(p t) + s) / (sum(p) + sum(t) + s) over the batch, p = sigmoid(logits).

    Summing over the batch, not per image, keeps empty masks from dividing
    nothing by nothing; ``smooth`` keeps an all-empty batch finite (loss 0 when
    nothing is predicted there).
    """
    probabilities = torch.sigmoid(logits)
    intersection = (probabilities * targets).sum()
    total = probabilities.sum() + targets.sum()
    return 1 - (2 * intersection + smooth) / (total + smooth)


def lovasz_hinge(logits, targets, penalty=F.relu):
    """Mean over images of the Lovasz extension of the IoU loss of each image.

    Pixel errors are hinge margins 1 - logit * sign; sorted from the worst,
    each is weighted by how much it raises 1 - IoU when added to the set of
    wrong pixels. For logits of +-1 this is exactly 2 * (1 - IoU) of the mask
    logits > 0. ``penalty`` turns each pixel's error into its loss.
    """
    logits = logits.flatten(1)
    targets = targets.flatten(1).to(logits.dtype)
    errors = 1 - logits * (2 * targets - 1)
    errors_sorted, order = errors.sort(dim=1, descending=True)
    truth_sorted = targets.gather(1, order)
    salt = truth_sorted.sum(1, keepdim=True)
    intersection = salt - truth_sorted.cumsum(1)
    union = salt + (1 - truth_sorted).cumsum(1)
    jaccard = 1 - intersection / union
    weights = torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)
    return (penalty(errors_sorted) * weights).sum(1).mean()


def lovasz_elu(logits, targets):
    """The Lovasz hinge with the penalty elu(e) + 1, which is never flat."""
    return lovasz_hinge(logits, targets, penalty=lambda errors: F.elu(errors) + 1)


_PARTS = {"bce": F.binary_cross_entropy_with_logits, "dice": soft_dice_loss,
          "lovasz": lovasz_hinge, "lovasz_elu": lovasz_elu}


def is_valid_name(name):
    parts = name.split("+")
    return all(part in _PARTS for part in parts) and len(set(parts)) == len(parts)


class CombinedLoss(torch.nn.Module):
    """The sum of the named losses, e.g. ``CombinedLoss("bce+lovasz")``."""

    def __init__(self, name="bce"):
        super().__init__()
        if not is_valid_name(name):
            raise ValueError(f"unknown loss {name!r}: use one of {LOSSES} or several "
                             f"joined with '+', e.g. 'bce+lovasz'")
        self.name = name
        self.parts = [_PARTS[part] for part in name.split("+")]

    def forward(self, logits, targets):
        return sum(part(logits, targets) for part in self.parts)
