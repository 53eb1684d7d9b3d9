"""Training losses, all taking logits: (N,1,H,W) with 0/1 targets for one
class, (N,K,H,W) with (N,H,W) class indices for K classes.

- "bce": binary cross-entropy, the tutorial's loss; every pixel counts alike.
- "dice": one minus the soft Dice coefficient over the whole batch; it weighs
  the salt area rather than the pixel count, so small salt bodies matter.
- "lovasz": the Lovasz hinge (Berman et al., 2018), a convex surrogate of
  one minus the IoU of each image, which is what the competition score rewards.
- "lovasz_elu": the same with elu(e) + 1 in place of max(e, 0) for each pixel
  error e, a smooth penalty that still moves pixels already past their margin.
- "lovasz_symmetric": the mean of the Lovasz hinge of the salt and of the
  background (the negated logits against the inverted mask). An image without
  salt then teaches every pixel, not only its worst one.
Combinations such as "bce+lovasz" add their parts with equal weights.
``DeepSupervisionLoss`` adds a loss for each part of a gated network's output.
With several classes "bce" is its multi-class form, softmax cross-entropy,
"dice" the mean of each class's soft Dice loss and "lovasz" the
Lovasz-softmax; "lovasz_elu" and "lovasz_symmetric" are for one class only.
"""
import torch
import torch.nn.functional as F

LOSSES = ("bce", "dice", "lovasz", "lovasz_elu", "lovasz_symmetric")


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


def _lovasz_weights(truth_sorted):
    """How much each error, in the order given (worst first), raises 1 - IoU
    when it joins the set of wrong pixels; along the last dimension."""
    salt = truth_sorted.sum(-1, keepdim=True)
    intersection = salt - truth_sorted.cumsum(-1)
    union = salt + (1 - truth_sorted).cumsum(-1)
    jaccard = 1 - intersection / union
    return torch.cat([jaccard[..., :1], jaccard[..., 1:] - jaccard[..., :-1]], dim=-1)


def lovasz_hinge(logits, targets, penalty=F.relu, symmetric=False):
    """Mean over images of the Lovasz extension of the IoU loss of each image.

    Pixel errors are hinge margins 1 - logit * sign; sorted from the worst,
    each is weighted by how much it raises 1 - IoU when added to the set of
    wrong pixels. For logits of +-1 this is exactly 2 * (1 - IoU) of the mask
    logits > 0. ``penalty`` turns each pixel's error into its loss.
    ``symmetric`` averages in the same loss of the background: negating both
    the logits and the mask leaves every error as it is, so only the weights,
    those of the inverted truth, change.
    """
    logits = logits.flatten(1)
    targets = targets.flatten(1).to(logits.dtype)
    errors = 1 - logits * (2 * targets - 1)
    errors_sorted, order = errors.sort(dim=1, descending=True)
    truth_sorted = targets.gather(1, order)
    weights = _lovasz_weights(truth_sorted)
    if symmetric:
        weights = (weights + _lovasz_weights(1 - truth_sorted)) / 2
    return (penalty(errors_sorted) * weights).sum(1).mean()


def lovasz_elu(logits, targets):
    """The Lovasz hinge with the penalty elu(e) + 1, which is never flat."""
    return lovasz_hinge(logits, targets, penalty=lambda errors: F.elu(errors) + 1)


def lovasz_symmetric(logits, targets):
    """The mean of the Lovasz hinge of the salt and that of the background."""
    return lovasz_hinge(logits, targets, symmetric=True)


def multiclass_dice_loss(logits, targets, smooth=1.0):
    """The mean over classes of each class's soft Dice loss over the batch."""
    probabilities = logits.softmax(1)
    one_hot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).to(probabilities.dtype)
    intersection = (probabilities * one_hot).sum((0, 2, 3))
    total = probabilities.sum((0, 2, 3)) + one_hot.sum((0, 2, 3))
    return (1 - (2 * intersection + smooth) / (total + smooth)).mean()


def lovasz_softmax(logits, targets):
    """The Lovasz-softmax over the batch: for each class present, the Lovasz
    extension of its 1 - IoU applied to the errors |1[class] - p(class)|,
    averaged. For certain predictions it is the mean of 1 - IoU over classes."""
    probabilities = logits.softmax(1).movedim(1, -1).reshape(-1, logits.shape[1])
    labels = targets.reshape(-1)
    losses = []
    for index in range(logits.shape[1]):
        truth = (labels == index).to(probabilities.dtype)
        if not truth.any():
            continue
        errors_sorted, order = (truth - probabilities[:, index]).abs().sort(descending=True)
        losses.append((errors_sorted * _lovasz_weights(truth[order])).sum())
    return torch.stack(losses).mean()


_PARTS = {"bce": F.binary_cross_entropy_with_logits, "dice": soft_dice_loss,
          "lovasz": lovasz_hinge, "lovasz_elu": lovasz_elu,
          "lovasz_symmetric": lovasz_symmetric}
# the forms of the losses for several classes
_MULTICLASS_PARTS = {"bce": F.cross_entropy, "dice": multiclass_dice_loss,
                     "lovasz": lovasz_softmax}


def _parts_for(num_classes):
    return _PARTS if num_classes == 1 else _MULTICLASS_PARTS


def is_valid_name(name, num_classes=1):
    parts = name.split("+")
    known = _parts_for(num_classes)
    return all(part in known for part in parts) and len(set(parts)) == len(parts)


class CombinedLoss(torch.nn.Module):
    """The sum of the named losses, e.g. ``CombinedLoss("bce+lovasz")``."""

    def __init__(self, name="bce", num_classes=1):
        super().__init__()
        if not is_valid_name(name, num_classes):
            raise ValueError(f"unknown loss {name!r} for {num_classes} class(es): use one of "
                             f"{LOSSES} or several joined with '+', e.g. 'bce+lovasz'")
        self.name = name
        self.parts = [_parts_for(num_classes)[part] for part in name.split("+")]

    def forward(self, logits, targets):
        return sum(part(logits, targets) for part in self.parts)


class DeepSupervisionLoss(torch.nn.Module):
    """For a network with an image gate (``UNet(imageGate=True)``): ``loss``
    of the gated output, plus binary cross-entropy of the image head against
    whether each image holds salt, plus ``loss`` of the ungated pixel head on
    the images that hold salt only. Each head then learns its own question
    (is there salt; where, given that there is) besides their product.

    Takes the network's ``(gated, pixel, image)`` logits (``model(x,
    parts=True)``); given plain logits, as in validation, it is ``loss`` alone.
    """
    takes_parts = True

    def __init__(self, loss):
        super().__init__()
        self.loss = loss

    def forward(self, outputs, targets):
        if torch.is_tensor(outputs):
            return self.loss(outputs, targets)
        gated, pixel, image = outputs
        has_salt = targets.flatten(1).amax(1) > 0.5
        total = (self.loss(gated, targets)
                 + F.binary_cross_entropy_with_logits(image, has_salt.to(image.dtype)))
        if has_salt.any():
            total = total + self.loss(pixel[has_salt], targets[has_salt])
        return total
