"""TIME_BUDGET: a run trains the epochs that fit, over a schedule that spans them."""
import torch

import train
from flags import TINY
from pyimagesearch import budget


def test_a_spent_budget_ends_the_run_with_its_schedule(tmp_path, synthetic_folder, capsys):
    # a budget of 0.06 s is spent by the first epochs: the run plans on after
    # the 3rd of its 6 epochs, and the cosine that spanned 6 now ends there
    common = ["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY,
              "--num-epochs", "6", "--lr-schedule", "cosine", "--time-budget", "0.001"]
    train.main(common)
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert state["epoch"] == 3 and state["planned_epochs"] == 3
    assert state["optimizer"]["param_groups"][0]["lr"] == 0
    assert "--num-epochs 3 --time-budget 0" in capsys.readouterr().out

    # the plan is part of the run: resuming it does not train epochs 4 to 6
    train.main([*common, "--resume"])
    assert "already has 3 epochs" in capsys.readouterr().out


def test_without_a_budget_every_epoch_is_trained(tmp_path, synthetic_folder):
    train.main(["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY,
                "--num-epochs", "4", "--lr-schedule", "cosine"])
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert state["epoch"] == 4 and state["planned_epochs"] is None


def test_a_budgeted_run_resumed_after_its_plan_ends_as_if_never_stopped(
        tmp_path, synthetic_folder, monkeypatch, run_stopped_during_epoch):
    # the plan is fixed at 5 of 8 epochs (the real one depends on the clock);
    # one run is stopped during epoch 5, after the plan, and resumed
    monkeypatch.setattr(budget, "epochs_within_budget", lambda *args: 5)
    common = ["--dataset-path", synthetic_folder, *TINY, "--num-epochs", "8",
              "--lr-schedule", "cosine", "--time-budget", "1"]
    train.main([*common, "--base-output", str(tmp_path / "straight")])
    run_stopped_during_epoch([*common, "--base-output", str(tmp_path / "resumed")], 5)
    train.main([*common, "--base-output", str(tmp_path / "resumed"), "--resume"])

    straight = torch.load(tmp_path / "straight" / "checkpoint.pth", weights_only=True)
    resumed = torch.load(tmp_path / "resumed" / "checkpoint.pth", weights_only=True)
    assert straight["epoch"] == resumed["epoch"] == 5
    assert all(torch.equal(straight["model"][name], resumed["model"][name])
               for name in straight["model"])


def test_the_pace_is_that_of_the_latest_epochs():
    # the loop started at 0; epochs ended at 10, 14, 16, 18, 20 s: the first,
    # slow one no longer counts once three others are timed
    assert budget.recent_pace([0, 10]) == 10
    assert budget.recent_pace([0, 10, 14]) == 7
    assert budget.recent_pace([0, 10, 14, 16, 18, 20]) == 2


def test_a_run_that_speeds_up_plans_again_and_its_schedule_follows(
        tmp_path, synthetic_folder, monkeypatch, capsys):
    # the first plan (after epoch 2) fits 5 of 6 epochs; the second, after
    # epoch 4, finds all 6 fit: the run trains 6, its cosine ending at 0
    monkeypatch.setattr(budget, "PLAN_AT_EPOCHS", (2, 4))
    decisions = iter([5, 6])
    monkeypatch.setattr(budget, "epochs_within_budget", lambda *args: next(decisions))
    train.main(["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY,
                "--num-epochs", "6", "--lr-schedule", "cosine", "--time-budget", "1"])
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    assert state["epoch"] == 6 and state["planned_epochs"] == 6
    assert state["optimizer"]["param_groups"][0]["lr"] == 0
    out = capsys.readouterr().out
    assert "5 epochs fit" in out and "6 epochs fit" in out
