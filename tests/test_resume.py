"""An interrupted run, resumed, ends exactly where an uninterrupted one does."""
import functools
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import train
from flags import TINY
from pyimagesearch.checkpoint import load_model

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def last_weights(output):
    model, _, _ = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    return model.state_dict()


# plain; a weight average after every step with augmentation; an average of
# the last two epochs, begun before the interruption
@pytest.mark.parametrize("changed", [[], ["--ema-decay", "0.9", "--augment", "true"],
                                     ["--swa-share", "0.67"]])
def test_resumed_run_equals_uninterrupted_run(tmp_path, synthetic_folder, capsys, changed,
                                              run_stopped_during_epoch):
    common = ["--dataset-path", synthetic_folder, "--num-epochs", "3", *TINY, *changed]
    train.main([*common, "--base-output", str(tmp_path / "straight")])

    output = str(tmp_path / "interrupted")
    stopped = run_stopped_during_epoch([*common, "--base-output", output], 3)
    assert "--resume" in str(stopped.code)
    # the progress bars are closed on the way out, so the message Python
    # prints next starts on its own line instead of after a half-drawn bar
    assert capsys.readouterr().err.endswith("\n")
    _, _, metadata = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] == 2

    train.main([*common, "--base-output", output, "--resume"])
    straight, resumed = last_weights(str(tmp_path / "straight")), last_weights(output)
    assert all(torch.equal(straight[name], resumed[name]) for name in straight)
    with open(os.path.join(output, "history.csv")) as handle:
        assert [line.split(",")[0] for line in handle][1:] == ["1", "2", "3"]


def test_with_ema_decay_the_average_is_what_is_saved(tmp_path, synthetic_folder):
    common = ["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY]
    train.main([*common, "--num-epochs", "1", "--ema-decay", "0.9"])
    state = torch.load(tmp_path / "checkpoint.pth", weights_only=True)
    saved = last_weights(str(tmp_path))
    averaged = {name.removeprefix("module."): value for name, value in state["average"].items()}
    name = "encoder.encBlocks.0.conv1.weight"
    assert torch.equal(saved[name], averaged[name])
    assert not torch.allclose(saved[name], state["model"][name], atol=1e-5)


def test_with_swa_share_the_last_epochs_weights_are_averaged(tmp_path, synthetic_folder):
    # 0.67 of 2 epochs averages the second; of 3 epochs, the second and third
    common = ["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY,
              "--batch-norm", "true", "--swa-share", "0.67"]
    train.main([*common, "--num-epochs", "2"])
    second = torch.load(tmp_path / "checkpoint.pth", weights_only=True)["model"]
    train.main([*common, "--num-epochs", "3", "--resume"])
    third = torch.load(tmp_path / "checkpoint.pth", weights_only=True)["model"]
    saved = last_weights(str(tmp_path))
    for name in ("encoder.encBlocks.0.conv1.weight", "encoder.encBlocks.0.norm1.running_mean"):
        assert torch.allclose(saved[name], (second[name] + third[name]) / 2, atol=1e-6)
        assert not torch.allclose(saved[name], third[name], atol=1e-5)


@pytest.mark.parametrize("trained, changed, message", [
    ([], ["--base-filters", "8"], "another network"),
    ([], ["--ema-decay", "0.9"], "--ema-decay 0"),
    # an exponential moving average would load into the equal one unnoticed
    (["--ema-decay", "0.9"], ["--ema-decay", "0", "--swa-share", "0.5"],
     "holds an exponential moving average"),
])
def test_resume_refuses_a_checkpoint_it_cannot_continue(tmp_path, synthetic_folder, trained,
                                                        changed, message):
    common = ["--dataset-path", synthetic_folder, "--base-output", str(tmp_path), *TINY]
    train.main([*common, "--num-epochs", "1", *trained])
    with pytest.raises(SystemExit) as exit_info:
        train.main([*common, "--num-epochs", "2", *changed, "--resume"])
    assert message in str(exit_info.value.code)


def test_resume_without_a_checkpoint_says_so(tmp_path, synthetic_folder):
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dataset-path", synthetic_folder, "--base-output", str(tmp_path),
                    "--resume", *TINY])
    assert "nothing to resume" in str(exit_info.value.code)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_cleanly_and_keeps_the_finished_epochs(tmp_path, synthetic_folder, signum):
    output = tmp_path / "run"
    process = subprocess.Popen(
        [sys.executable, os.path.join(PROJECT, "train.py"), "--dataset-path", synthetic_folder,
         "--base-output", str(output), "--num-epochs", "200", *TINY],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a test run started in the background of a shell script inherits an
        # ignored SIGINT, which Python then leaves ignored: restore the default
        preexec_fn=functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (output / "checkpoint.pth").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 1
    assert "--resume" in err and "Traceback" not in err
    assert not [f for f in os.listdir(output) if ".tmp" in f]
    _, _, metadata = load_model(str(output / "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] >= 1
