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


def build_scheduler(settings, optimizer, steps_per_epoch, num_epochs=None, steps_done=0):
    """A per-batch schedule, or None for a constant learning rate.

    "cosine" falls from INIT_LR to 0 along half a cosine over ``num_epochs``
    (NUM_EPOCHS unless given): long at high rates while the network finds its
    way, then small steps that settle it into a minimum. WARMUP_EPOCHS first
    ramps the rate up linearly from INIT_LR / steps to INIT_LR; the cosine then
    spans the remaining steps. A schedule built with ``steps_done`` continues
    from that step, as when a time budget fixes the epochs during the run.
    """
    warmup = round(settings.WARMUP_EPOCHS * steps_per_epoch)
    if settings.LR_SCHEDULE == "constant" and not warmup:
        return None
    total = max((num_epochs or settings.NUM_EPOCHS) * steps_per_epoch, 1)
    cosine = settings.LR_SCHEDULE == "cosine"

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        if not cosine:
            return 1.0
        progress = min(step - warmup, total - warmup) / max(total - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor, last_epoch=steps_done - 1)
