import math
import types

import pytest
import torch

from pyimagesearch.budget import epochs_within_budget
from pyimagesearch.optim import build_scheduler


def schedule_settings(schedule="cosine", warmup_epochs=0, epochs=3, swa_share=0.0,
                      swa_lr=0.0, lr=0.1):
    return types.SimpleNamespace(LR_SCHEDULE=schedule, WARMUP_EPOCHS=warmup_epochs,
                                 NUM_EPOCHS=epochs, SWA_SHARE=swa_share, SWA_LR=swa_lr,
                                 INIT_LR=lr)


def rates(schedule, warmup_epochs, steps_per_epoch=2, epochs=3, lr=0.1, **swa):
    settings = schedule_settings(schedule, warmup_epochs, epochs, lr=lr, **swa)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    scheduler = build_scheduler(settings, optimizer, steps_per_epoch)
    if scheduler is None:
        return None
    seen = []
    for _ in range(epochs * steps_per_epoch):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_constant_rate_without_warmup_needs_no_scheduler():
    assert rates("constant", 0) is None


def test_cosine_falls_from_the_rate_towards_zero():
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * step / 6)) for step in range(6)]
    assert rates("cosine", 0) == pytest.approx(expected)


def test_warmup_ramps_up_then_the_cosine_spans_the_remaining_steps():
    # 2 warm-up steps (1 epoch of 2 batches): 0.05, 0.1; then a cosine over the
    # 4 remaining steps: factors 1, (1 + cos(pi/4)) / 2, 1/2, (1 + cos(3pi/4)) / 2
    assert rates("cosine", 1) == pytest.approx(
        [0.05, 0.1, 0.1, 0.1 * 0.853553, 0.05, 0.1 * 0.146447], rel=1e-5)


def test_the_averaged_epochs_keep_the_rate_the_cosine_falls_to():
    # 4 epochs of 2 steps, the last quarter (1 epoch) averaged at 0.02: a
    # cosine from 0.1 to 0.02 over the first 6 steps, then 0.02
    cosine = [0.02 + 0.08 * 0.5 * (1 + math.cos(math.pi * step / 6)) for step in range(6)]
    assert rates("cosine", 0, epochs=4, swa_share=0.25, swa_lr=0.02) == pytest.approx(
        cosine + [0.02, 0.02])


def test_the_averaged_epochs_follow_a_constant_rate_too():
    assert rates("constant", 0, epochs=4, swa_share=0.5, swa_lr=0.02) == pytest.approx(
        [0.1] * 4 + [0.02] * 4)


def test_warmup_before_a_constant_rate():
    assert rates("constant", 1) == pytest.approx([0.05, 0.1, 0.1, 0.1, 0.1, 0.1])


def test_a_rebuilt_schedule_continues_over_its_new_span():
    # 2 of 6 steps at a cosine over 6, then rebuilt over 4 epochs of 2 steps:
    # the rates go on from step 2 of a cosine over 8 steps
    settings = schedule_settings()
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    scheduler = build_scheduler(settings, optimizer, 2)
    for _ in range(2):
        optimizer.step()
        scheduler.step()
    scheduler = build_scheduler(settings, optimizer, 2, num_epochs=4, steps_done=2)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1 * 0.5 * (1 + math.cos(math.pi * step / 8))
                                  for step in range(2, 8)])


@pytest.mark.parametrize("spent, per_epoch, most, expected", [
    (100, 20, 100, 27),   # (600 - 100) / 20 = 25 epochs of time, one kept for tuning: 3 + 24
    (100, 20, 10, 10),    # NUM_EPOCHS is the most
    (700, 20, 100, 3),    # over the budget already: stop with the epochs done
    (555, 20, 100, 4),    # 45 s left: 2 epochs' time, one of them kept for tuning
])
def test_epochs_within_budget_by_hand(spent, per_epoch, most, expected):
    assert epochs_within_budget(600, spent, per_epoch, 3, most) == expected
