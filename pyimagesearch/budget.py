"""TIME_BUDGET: after its first epochs a run decides how many fit its minutes."""
import math

import torch
from tqdm import tqdm

# the epochs timed before a run decides how many fit
PLAN_AFTER_EPOCHS = 3


def epochs_within_budget(budget_seconds, spent_seconds, seconds_per_epoch, epochs_done,
                         max_epochs):
    """How many epochs in all a run can train within ``budget_seconds``.

    The time of one epoch is kept back for the tuning that follows training.
    Never fewer than the epochs already done, never more than ``max_epochs``.
    """
    fit = math.floor((budget_seconds - spent_seconds) / seconds_per_epoch) - 1
    return max(epochs_done, min(max_epochs, epochs_done + fit))


def plan_due(settings, progress, epoch):
    """Whether the run decides its number of epochs after ``epoch``: once,
    with a budget, when enough epochs are timed and more are still to come."""
    return (bool(settings.TIME_BUDGET) and progress.planned_epochs is None
            and PLAN_AFTER_EPOCHS <= epoch < progress.num_epochs)


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
