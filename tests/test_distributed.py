"""train.py under torchrun: two CPU processes (Gloo) on generated data, with
batch normalisation and a weight average, each process's batch of 8 in pieces of 4
(gradients synchronised once per batch)."""
import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from torch.utils.data import DataLoader

import train
from pyimagesearch import distributed
from pyimagesearch.checkpoint import load_model
from pyimagesearch.dataset import SegmentationDataset
from pyimagesearch.distributed import Context, shard
from pyimagesearch.engine import evaluate

PROJECT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Gloo on CPU processes, also on a machine with GPUs (which would give each
# process a GPU of its own, and has perhaps only one); fp32, which the
# single-process evaluation below computes too
TINY = ["--device", "cpu", "--precision", "fp32", "--input-image-width", "32",
        "--input-image-height", "32", "--num-levels", "2", "--batch-size", "16",
        "--batch-norm", "true", "--ema-decay", "0.9", "--micro-batch-size", "4"]


def torchrun(*argv):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", os.path.join(PROJECT, "train.py"), *argv]
    environment = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, timeout=600,
                          env=environment)


@pytest.fixture(scope="module")
def distributed_run(tmp_path_factory, synthetic_folder):
    output = str(tmp_path_factory.mktemp("ddp"))
    result = torchrun("--dataset-path", synthetic_folder, "--base-output", output,
                      "--num-epochs", "2", *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    return output, result


def test_the_ranks_end_with_identical_weights(distributed_run):
    _, result = distributed_run
    assert "identical on all 2 processes" in result.stdout


def test_batch_norm_runs_per_process_on_cpus(distributed_run):
    # PyTorch's SyncBatchNorm refuses CPU modules: asking for it must not stop the run
    _, result = distributed_run
    assert "each process's share of the batch" in result.stdout


def test_batch_norm_in_pieces_is_announced(distributed_run):
    _, result = distributed_run
    assert "pieces of 4 images (MICRO_BATCH_SIZE): batch norm normalises" in result.stdout


def test_files_are_written_once(distributed_run):
    output, result = distributed_run
    assert result.stdout.count("[INFO] epoch 2/2") == 1
    with open(os.path.join(output, "history.csv")) as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    assert not [name for name in os.listdir(output) if ".tmp" in name]
    _, _, metadata = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] == 2


def test_validation_metrics_equal_a_single_process_evaluation(distributed_run):
    output, _ = distributed_run
    model, arguments, metadata = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    with open(os.path.join(output, "test_paths.txt")) as handle:
        pairs = [line.rstrip("\n").split("\t") for line in handle]
    dataset = SegmentationDataset([p[0] for p in pairs], [p[1] for p in pairs],
                                  size=tuple(arguments["outSize"]), num_channels=1)
    single = evaluate(model, DataLoader(dataset, batch_size=7), torch.nn.BCEWithLogitsLoss(),
                      "cpu", 0.5, description=None).means()
    for name in ("loss", "iou", "dice", "score"):
        assert metadata["metrics"][name] == pytest.approx(single[name], rel=1e-5, abs=1e-6)


def test_resume_under_torchrun(distributed_run, tmp_path):
    output, _ = distributed_run
    result = torchrun("--base-output", output, "--num-epochs", "3", "--resume",
                      "--dataset-path", os.path.dirname(_first_image_folder(output)), *TINY)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resuming after epoch 2" in result.stdout
    _, _, metadata = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] == 3


def _first_image_folder(output):
    with open(os.path.join(output, "test_paths.txt")) as handle:
        return os.path.dirname(handle.readline().split("\t")[0])


def test_validation_shards_cover_every_image_once():
    shares = [shard(range(11), Context(rank=r, world_size=3)) for r in range(3)]
    assert sorted(sum(shares, [])) == list(range(11))


def test_an_error_stops_every_rank(tmp_path):
    result = torchrun("--dataset-path", str(tmp_path / "absent"), "--base-output",
                      str(tmp_path / "out"), *TINY)
    assert result.returncode != 0
    assert "does not exist" in result.stderr


def test_a_global_batch_that_does_not_split_evenly_is_refused(tmp_path, synthetic_folder):
    result = torchrun("--dataset-path", synthetic_folder, "--base-output", str(tmp_path),
                      *TINY, "--batch-size", "15")
    assert result.returncode != 0
    assert "multiple of the 2 processes" in result.stderr


def test_interrupting_torchrun_stops_every_rank(tmp_path, synthetic_folder):
    output = tmp_path / "run"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", os.path.join(PROJECT, "train.py"),
               "--dataset-path", synthetic_folder, "--base-output", str(output),
               "--num-epochs", "500", *TINY]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    deadline = time.time() + 120
    while not (output / "checkpoint.pth").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)  # a hang fails here
    assert process.returncode != 0
    _, _, metadata = load_model(str(output / "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] >= 1
    assert not [name for name in os.listdir(output) if ".tmp" in name]


@pytest.mark.parametrize("rank", [0, 1])
def test_more_processes_than_gpus_is_said_by_every_rank(monkeypatch, tmp_path, rank):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", str(rank))
    monkeypatch.setenv("LOCAL_RANK", str(rank))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: pytest.fail("took a GPU"))
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--device", "cuda", "--base-output", str(tmp_path)])
    message = str(exit_info.value.code)
    assert "2 processes" in message and "1 GPU(s)" in message
    assert "--nproc_per_node 1" in message and "--device cpu" in message


def test_collectives_get_their_tensors_on_the_contexts_device(monkeypatch):
    # NCCL refuses CPU tensors; "meta" stands in for a GPU here
    seen = []

    def record(tensor, *args, **kwargs):
        seen.append(tensor.device.type)

    for name in ("all_reduce", "broadcast"):
        monkeypatch.setattr(distributed.dist, name, record)
    context = Context(rank=0, world_size=2, device=torch.device("meta"))
    # as the time budget's timing is built, on the CPU
    cpu_tensor = torch.ones(2, dtype=torch.float64)
    assert distributed.all_reduce_sum(cpu_tensor, context).device.type == "meta"
    assert distributed.all_reduce_max(cpu_tensor, context).device.type == "meta"
    with torch.device("meta"):
        model = torch.nn.BatchNorm2d(3)
    distributed.share_buffers(model, context)
    assert seen and set(seen) == {"meta"}


def test_processes_that_would_build_different_networks_are_refused(monkeypatch):
    # as --preset salt would on a machine with bf16 units beside one without
    mine = {"encChannels": (1, 16, 32), "nbClasses": 1}
    theirs = {"encChannels": (1, 8, 16), "nbClasses": 1}

    def gather(everyone, arguments):
        everyone[:] = [mine, theirs]

    monkeypatch.setattr(distributed.dist, "all_gather_object", gather)
    context = Context(rank=0, world_size=2)
    with pytest.raises(distributed.LaunchError) as error:
        distributed.check_same_network(mine, context)
    message = str(error.value)
    assert "encChannels (1, 16, 32) on process 0, (1, 8, 16) on process 1" in message
    assert "nbClasses" not in message and "--base-filters" in message
    theirs["encChannels"] = mine["encChannels"]
    distributed.check_same_network(mine, context)
