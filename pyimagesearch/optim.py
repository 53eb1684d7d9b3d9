"""The optimizer and learning-rate schedule a run's settings ask for."""
import math

import torch


# the allowed values of LR_SCHEDULE
SCHEDULES = ("constant", "cosine")


def build_optimizer(settings, parameters):
    """Adam as in the tutorial; AdamW when WEIGHT_DECAY is set, since Adam's own
    weight decay is scaled away by its per-weight step sizes."""
    if settings.WEIGHT_DECAY:
        return torch.optim.AdamW(parameters, lr=settings.INIT_LR,
                                 weight_decay=settings.WEIGHT_DECAY)
    return torch.optim.Adam(parameters, lr=settings.INIT_LR)


def last_epochs(share, num_epochs):
    """How many epochs the last ``share`` of ``num_epochs`` is (SWA_SHARE,
    FINAL_LOSS_SHARE)."""
    return round(share * num_epochs)


def in_last_epochs(epoch, num_epochs, share):
    """Whether ``epoch`` (from 1) is one of the last ``share`` of ``num_epochs``."""
    return epoch > num_epochs - last_epochs(share, num_epochs)


def build_scheduler(settings, optimizer, steps_per_epoch, num_epochs=None, steps_done=0):
    """A per-batch schedule, or None for a constant learning rate.

    "cosine" falls from INIT_LR to 0 along half a cosine over ``num_epochs``
    (NUM_EPOCHS unless given): long at high rates while the network finds its
    way, then small steps that settle it into a minimum. WARMUP_EPOCHS first
    ramps the rate up linearly from INIT_LR / steps to INIT_LR; the cosine then
    spans the remaining steps. With SWA_SHARE the last epochs, whose weights
    are averaged, keep the rate SWA_LR, which the cosine falls to instead of 0:
    steps large enough to visit different points of one wide minimum.
    A schedule built with ``steps_done`` continues from that step, as when a
    time budget fixes the epochs during the run.
    """
    epochs = num_epochs or settings.NUM_EPOCHS
    warmup = round(settings.WARMUP_EPOCHS * steps_per_epoch)
    averaged = last_epochs(settings.SWA_SHARE, epochs) * steps_per_epoch
    if settings.LR_SCHEDULE == "constant" and not warmup and not averaged:
        return None
    total = max(epochs * steps_per_epoch, 1)
    decay_end = total - averaged
    floor = settings.SWA_LR / settings.INIT_LR if averaged else 0.0
    cosine = settings.LR_SCHEDULE == "cosine"

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        if averaged and step >= decay_end:
            return floor
        if not cosine:
            return 1.0
        progress = min(step - warmup, decay_end - warmup) / max(decay_end - warmup, 1)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=steps_done - 1)
