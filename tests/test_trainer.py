import csv
import os

import pytest

import train
from pyimagesearch.cli import parse_settings
from pyimagesearch.losses import DeepSupervisionLoss
from flags import TINY
from pyimagesearch.trainer import build_losses


@pytest.mark.parametrize("share, num_epochs, first_final", [
    (0.0, 30, None), (0.2, 30, 25), (0.2, 7, 7), (1.0, 4, 1)])
def test_the_final_loss_trains_the_last_share_of_the_epochs(share, num_epochs, first_final):
    losses = build_losses(parse_settings(["--loss", "bce+lovasz", "--final-loss", "lovasz",
                                          "--final-loss-share", str(share)]))
    names = [losses.training(epoch, num_epochs).name for epoch in range(1, num_epochs + 1)]
    assert names == ["lovasz" if first_final and epoch >= first_final else "bce+lovasz"
                     for epoch in range(1, num_epochs + 1)]
    assert losses.validation.name == "bce+lovasz"


def test_deep_supervision_wraps_both_losses():
    losses = build_losses(parse_settings(["--preset", "salt", "--deep-supervision", "true",
                                          "--final-loss-share", "0.5"]))
    assert isinstance(losses.training(1, 2), DeepSupervisionLoss)
    assert isinstance(losses.training(2, 2), DeepSupervisionLoss)


def history(output):
    with open(os.path.join(output, "history.csv")) as handle:
        return list(csv.DictReader(handle))


def test_a_run_switches_to_the_final_loss_for_its_last_epochs(tmp_path, synthetic_folder):
    common = ["--dataset-path", synthetic_folder, "--num-epochs", "2", "--loss", "bce", *TINY]
    train.main([*common, "--base-output", str(tmp_path / "plain")])
    train.main([*common, "--base-output", str(tmp_path / "final"), "--final-loss", "dice",
                "--final-loss-share", "0.5"])
    plain, final = history(str(tmp_path / "plain")), history(str(tmp_path / "final"))
    assert plain[0] == {**final[0], "seconds": plain[0]["seconds"]}
    assert plain[1]["train_loss"] != final[1]["train_loss"]
