"""TIME_BUDGET: after its first epochs a run decides how many fit its minutes."""
import math

import torch
from tqdm import tqdm

# after these epochs a run with a budget decides how many epochs fit, from the
# pace of the last few: early, and again as the pace changes (a first epoch
# warms up, and other work may share the machine for a while)
PLAN_AT_EPOCHS = (3, 10, 25, 50, 100)
# how many of the latest epochs set the pace
PACE_EPOCHS = 3


def epochs_within_budget(budget_seconds, spent_seconds, seconds_per_epoch, epochs_done,
                         max_epochs):
    """How many epochs in all a run can train within ``budget_seconds``.

    The time of one epoch is kept back for the tuning that follows training.
    Never fewer than the epochs already done, never more than ``max_epochs``.
    """
    fit = math.floor((budget_seconds - spent_seconds) / seconds_per_epoch) - 1
    return max(epochs_done, min(max_epochs, epochs_done + fit))


def plan_due(settings, progress, epoch):
    """Whether the run decides its number of epochs after ``epoch``: with a
    budget, at the planning epochs, while more epochs are still to come."""
    return (bool(settings.TIME_BUDGET) and epoch in PLAN_AT_EPOCHS
            and epoch < progress.num_epochs)


def recent_pace(epoch_ends):
    """Seconds per epoch over the latest PACE_EPOCHS epochs; ``epoch_ends``
    holds when the loop started, then when each epoch ended."""
    recent = epoch_ends[-PACE_EPOCHS - 1:]
    return (recent[-1] - recent[0]) / (len(recent) - 1)


def fit_budget(settings, epochs_done, max_epochs, spent_seconds, epoch_seconds, reduce_max):
    """How many epochs in all fit TIME_BUDGET, decided alike in every process
    from the slowest one's timing, and said so."""
    timing = reduce_max(torch.tensor([spent_seconds, epoch_seconds], dtype=torch.float64))
    spent_seconds, epoch_seconds = timing.tolist()
    num_epochs = epochs_within_budget(settings.TIME_BUDGET * 60, spent_seconds, epoch_seconds,
                                      epochs_done, max_epochs)
    tqdm.write(f"[INFO] {epoch_seconds:.1f} s per epoch: {num_epochs} epochs fit the "
               f"{settings.TIME_BUDGET:g}-minute budget (TIME_BUDGET); as many on any "
               f"machine: --num-epochs {num_epochs} --time-budget 0")
    return num_epochs
