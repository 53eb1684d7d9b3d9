"""Speed of the pipeline against the tutorial's way of doing the same work.

    python -m tools.benchmark --dataset-path ../shared/tgs-salt/train

Each way trains the same network (the tutorial variant, 3 levels, 16/32/64
channels) on the same split for one epoch and then predicts the validation
images; each runs in fresh processes so that its peak memory is its own.

- "tutorial": images decoded from PNG and resized with PIL for every sample of
  every epoch, by os.cpu_count() DataLoader workers, 3-channel NCHW fp32 model,
  the epoch loss summed with its autograd graphs, prediction one image at a time.
- "pipeline": this project's path: the dataset decoded once into memory,
  channels_last, the PRECISION setting, inference_mode, prediction in
  batches of EVAL_BATCH_SIZE, training batches passed in pieces of
  MICRO_BATCH_SIZE (config.py's), freed memory kept for the next batch.
- "pipeline xN proc": the same under torchrun, one single-threaded process per
  core, as `torchrun --nproc_per_node N train.py` trains.

It runs on the device train.py would use (--device to choose): CUDA where
present, with the dataset in the GPU's memory. Beside each way stand the
device's limits, measured in the same run: the network's own training step
with a batch already on the device, and the matrix-multiply peak.

    python -m tools.benchmark --dataset-path ../shared/tgs-salt/train --whole-process 2

times whole runs instead (start, reading, N epochs, saving): the tutorial's
code against `python train.py` at the tutorial's settings, each with its peak
memory above what importing torch alone takes.
"""
import argparse
import csv
import functools
import json
import os
import subprocess
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from pyimagesearch import config, distributed
from pyimagesearch.config import PROJECT_ROOT
from pyimagesearch.dataset import DataError, SegmentationDataset, pair_image_mask_paths
from pyimagesearch.engine import (autocast_dtype, choose_precision, evaluate, prepare_model,
                                  reuse_freed_memory, train_one_epoch)
from pyimagesearch.inference import segment_files
from pyimagesearch.model import UNet, unet_arguments
from pyimagesearch.postprocess import PredictionRules
from tools.peak_memory import own_peak_kib

SIZE = (128, 128)
BATCH_SIZE = 64
# the tutorial's network on one gray channel, as the pipeline reads TGS images
PIPELINE_NETWORK = unet_arguments(1, 1, 3, 16, SIZE, "tutorial")


class PerSampleDataset(Dataset):
    """The tutorial's way: decode and resize (PIL) every sample, every epoch."""

    def __init__(self, image_paths, mask_paths):
        self.image_paths, self.mask_paths = image_paths, mask_paths
        self.transform = transforms.Compose([transforms.ToPILImage(), transforms.Resize(SIZE),
                                             transforms.ToTensor()])

    def __len__(self):
        return len(self.image_paths)

    def __getitem__(self, index):
        image = cv2.cvtColor(cv2.imread(self.image_paths[index]), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(self.mask_paths[index], cv2.IMREAD_UNCHANGED)
        mask = (mask > 0).astype(np.uint8) * 255
        return self.transform(image), self.transform(mask)


def flops_per_image(model, channels, backward):
    """Floating-point operations of one image through ``model`` (2 per multiply-add)."""
    x = torch.rand(1, channels, *SIZE)
    with FlopCounterMode(display=False) as counter:
        out = model(x)
        if backward:
            out.sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def matmul_peak(dtype, device, seconds=3.0):
    """Best GFLOP/s of a square matrix multiply in ``dtype`` on ``device``.

    Large matrices reach the peak; where the precision has no hardware support
    (bf16 on a CPU without AVX-512 BF16 or AMX) one large multiply would take
    minutes, so a small probe decides the size first.
    """
    def rate(n):
        a, b = (torch.rand(n, n, dtype=dtype, device=device) for _ in range(2))
        synchronize(device)
        started = time.perf_counter()
        a @ b
        synchronize(device)
        return 2 * n ** 3 / (time.perf_counter() - started) / 1e9, a, b

    probe, _, _ = rate(256)
    n = 8192 if device.type == "cuda" else 2048 if probe > 20 else 256
    best, a, b = rate(n)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * n ** 3 / (time.perf_counter() - started) / 1e9)
    return best


def split(dataset_path, limit):
    images, masks = pair_image_mask_paths(os.path.join(dataset_path, "images"),
                                          os.path.join(dataset_path, "masks"))
    if limit:
        images, masks = images[:limit], masks[:limit]
    return train_test_split(images, masks, test_size=0.15, random_state=42)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def tutorial_epoch(model, loss_fn, optimizer, loaders, device):
    """One epoch as the tutorial trains it; (training seconds, epoch seconds)."""
    train_loader, test_loader = loaders
    started = time.perf_counter()
    model.train()
    total_loss = 0
    for images, masks in train_loader:
        images, masks = images.to(device), masks.to(device)
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss  # as in the tutorial: keeps every step's graph alive
    synchronize(device)
    train_seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        for images, masks in test_loader:
            loss_fn(model(images.to(device)), masks.to(device))
    synchronize(device)
    return train_seconds, time.perf_counter() - started


def run_tutorial_way(parts, device, epochs, predict=True):
    train_images, test_images, train_masks, test_masks = parts
    torch.manual_seed(0)
    model = UNet(**unet_arguments(3, 1, 3, 16, SIZE, "tutorial")).to(device)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    options = {"batch_size": BATCH_SIZE, "num_workers": os.cpu_count(),
               "pin_memory": device.type == "cuda"}
    loaders = (DataLoader(PerSampleDataset(train_images, train_masks), shuffle=True, **options),
               DataLoader(PerSampleDataset(test_images, test_masks), **options))
    times = [tutorial_epoch(model, loss_fn, optimizer, loaders, device) for _ in range(epochs)]
    outcome = {"model": model, "channels": 3, "dtype": None, "train_seconds": times[-1][0],
               "epoch_seconds": times[-1][1], "epoch_times": [t[1] for t in times],
               "decode_seconds": 0.0, "context": distributed.Context(device=device)}
    if not predict:
        return outcome

    resize = transforms.Compose([transforms.ToPILImage(), transforms.Resize(SIZE),
                                 transforms.ToTensor()])
    started = time.perf_counter()
    with torch.no_grad():
        for path in test_images:
            image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            mask = torch.sigmoid(model(resize(image)[None].to(device))) > 0.5
            mask.cpu()
    # nothing is decoded ahead: the tutorial decodes inside every epoch
    return {**outcome, "predict_seconds": time.perf_counter() - started}


def run_pipeline_way(parts, device, precision, micro_batch):
    """This pipeline's way; under torchrun each process takes its share of the
    work, and the times are those of the slowest process."""
    train_images, test_images, train_masks, test_masks = parts
    reuse_freed_memory()
    context = distributed.setup(device.type)
    torch.manual_seed(0)
    device = context.device
    dtype = autocast_dtype(device, precision)
    started = time.perf_counter()
    train_set = SegmentationDataset(train_images, train_masks, size=SIZE).to(device)
    test_set = SegmentationDataset(test_images, test_masks, size=SIZE).to(device)
    decode_seconds = time.perf_counter() - started
    arguments = PIPELINE_NETWORK
    model = prepare_model(UNet(**arguments), device, channels_last=True)
    unet = distributed.wrap_model(model, context, sync_batchnorm=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(unet.parameters(), lr=0.001)
    fast = {"dtype": dtype, "channels_last": True, "description": None}
    train_loader, test_loader = distributed.make_loaders(
        train_set, test_set, BATCH_SIZE, context, seed=0, eval_batch_size=config.EVAL_BATCH_SIZE)
    reduce_sum = functools.partial(distributed.all_reduce_sum, context=context)
    distributed.barrier(context)
    started = time.perf_counter()
    train_one_epoch(unet, train_loader, loss_fn, optimizer, device, reduce_sum=reduce_sum,
                    micro_batch=micro_batch, **fast)
    train_seconds = time.perf_counter() - started
    reduce_sum(evaluate(model, test_loader, loss_fn, device, 0.5, **fast).sums)
    epoch_seconds = time.perf_counter() - started

    distributed.barrier(context)
    started = time.perf_counter()
    for _ in segment_files(model, arguments, distributed.shard(test_images, context), device,
                           PredictionRules(threshold=0.5, min_area=0, tta=False),
                           batch_size=config.EVAL_BATCH_SIZE, dtype=dtype, channels_last=True):
        pass
    distributed.barrier(context)
    return {"model": model, "channels": 1, "dtype": dtype, "train_seconds": train_seconds,
            "epoch_seconds": epoch_seconds,
            "predict_seconds": time.perf_counter() - started,
            "decode_seconds": decode_seconds, "context": context}


def step_limit(device, dtype, steps=8):
    """Training images/s of the pipeline's network when nothing but its steps
    run: train_one_epoch over one batch already on the device, again and again."""
    torch.manual_seed(0)
    model = prepare_model(UNet(**PIPELINE_NETWORK), device, channels_last=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    batch = (torch.rand(BATCH_SIZE, 1, *SIZE, device=device),
             (torch.rand(BATCH_SIZE, 1, *SIZE, device=device) > 0.5).float())

    def train(batches):
        # train_one_epoch reads its loss back from the device, so the steps
        # have finished when it returns
        train_one_epoch(model, batches, torch.nn.BCEWithLogitsLoss(), optimizer, device,
                        dtype=dtype, channels_last=True, description=None)

    train([batch])
    started = time.perf_counter()
    train([batch] * steps)
    return steps * BATCH_SIZE / (time.perf_counter() - started)


def measure(way, parts, device, precision, micro_batch):
    if way == "tutorial":
        outcome = run_tutorial_way(parts, device, epochs=1)
    else:
        outcome = run_pipeline_way(parts, device, precision, micro_batch)
    context = outcome["context"]
    # the slowest process sets the pace; the memory of all of them is the machine's
    times = distributed.all_reduce_max(torch.tensor(
        [outcome["train_seconds"], outcome["epoch_seconds"], outcome["predict_seconds"]]),
        context)
    train_s, epoch_s, predict_s = times.tolist()
    peak_mb = distributed.all_reduce_sum(torch.tensor(peak_rss_mb()), context).item()
    distributed.teardown(context)
    n_train, n_test = len(parts[0]), len(parts[1])
    model = outcome["model"].float().cpu().to(memory_format=torch.contiguous_format)
    train_flops = flops_per_image(model, outcome["channels"], backward=True)
    dtype = outcome["dtype"]
    return {"way": way, "processes": context.world_size,
            "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
            "train_images": n_train, "test_images": n_test,
            "decode_seconds": outcome["decode_seconds"], "epoch_seconds": epoch_s,
            "train_images_per_second": n_train / train_s,
            "predict_images_per_second": n_test / predict_s,
            "train_gflops_per_image": train_flops / 1e9,
            "achieved_gflops": train_flops * n_train / train_s / 1e9,
            "peak_rss_mb": peak_mb, "main": context.is_main}


def peak_rss_mb():
    return own_peak_kib() / 1024


def run_child(command):
    """(wall seconds, peak resident MB, stdout) of the Python program
    ``command`` (the arguments after the interpreter) run to its end in a
    fresh process; the peak of torchrun's processes is that of the largest."""
    with tempfile.TemporaryDirectory() as folder:
        report = os.path.join(folder, "peak")
        started = time.perf_counter()
        result = subprocess.run([sys.executable, "-m", "tools.peak_memory", report, *command],
                                capture_output=True, text=True, cwd=PROJECT_ROOT)
        seconds = time.perf_counter() - started
        if result.returncode:
            raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
        with open(report, encoding="utf-8") as handle:
            peak_kib = int(handle.read())
    return seconds, peak_kib / 1024, result.stdout


def whole_processes(args, device):
    """Wall time and peak memory of whole runs of N epochs: the tutorial's
    code against train.py at the tutorial's settings, each a fresh process."""
    epochs = str(args.whole_process)
    data = ["--dataset-path", args.dataset_path]
    train = ["train.py", *data, "--num-epochs", epochs, "--device", device.type,
             "--precision", args.precision]
    ways = [("tutorial's code", ["-m", "tools.benchmark", *data, "--way", "tutorial",
                                 "--epochs", epochs, "--device", device.type]),
            ("train.py, tutorial network", [*train, "--model-variant", "tutorial"]),
            ("train.py (aligned network)", train)]
    if device.type == "cpu" and args.processes > 1:
        ways.append((f"torchrun x{args.processes} train.py",
                     ["-m", "torch.distributed.run", "--standalone",
                      f"--nproc_per_node={args.processes}", *train]))
    # measured alone first: what importing torch costs, which every way pays,
    # and what importing everything train.py uses costs before any data
    _, torch_mb, _ = run_child(["-c", "import torch"])
    _, imports_mb, _ = run_child(["-c", "import train"])
    print(f"{args.whole_process} epochs on {device.type}, precision {args.precision} for "
          f"train.py; a process that only imports torch peaks at {torch_mb:.0f} MB, one "
          f"that imports what train.py does at {imports_mb:.0f} MB")
    print(f"{'way':<30}{'seconds':>9}{'last epoch s':>14}{'40 epochs s':>13}{'x faster':>10}"
          f"{'peak MB':>9}{'above torch':>13}{'above imports':>15}")
    projected = {}
    for name, command in ways:
        with tempfile.TemporaryDirectory() as out:
            is_tutorial = command[1] == "tools.benchmark"
            seconds, peak_mb, stdout = run_child(
                command if is_tutorial else [*command, "--base-output", out])
            if is_tutorial:
                last_epoch = json.loads(stdout.strip().splitlines()[-1])["epoch_times"][-1]
            else:
                last_epoch = last_epoch_seconds(os.path.join(out, "history.csv"))
        # the measured run, plus the epochs it did not train at its last one's pace
        projected[name] = seconds + (40 - args.whole_process) * last_epoch
        ratio = projected["tutorial's code"] / projected[name]
        print(f"{name:<30}{seconds:>9.1f}{last_epoch:>14.1f}{projected[name]:>13.0f}"
              f"{ratio:>9.2f}x{peak_mb:>9.0f}{peak_mb - torch_mb:>13.0f}"
              f"{peak_mb - imports_mb:>15.0f}")
    print("(40 epochs: the measured seconds plus the missing epochs at the last one's pace; "
          "peak MB: the largest process's, before the interpreter's exit)")


def last_epoch_seconds(history_path):
    with open(history_path, encoding="utf-8") as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def one_epoch_each(args, device):
    """One epoch and one prediction pass per way, and the device's limits."""
    dtype = autocast_dtype(device, args.precision)
    limit = step_limit(device, dtype)
    peak = {"fp32": matmul_peak(torch.float32, device),
            "bf16": matmul_peak(torch.bfloat16, device)}
    module = ["-m", "tools.benchmark", "--dataset-path", args.dataset_path,
              "--limit", str(args.limit), "--precision", args.precision,
              "--micro-batch", str(args.micro_batch), "--device", device.type]
    launches = [[*module, "--way", "tutorial"],
                [*module, "--way", "pipeline"]]
    if device.type == "cpu" and args.processes > 1:
        launches.append(["-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={args.processes}", *module, "--way", "pipeline"])
    results = [json.loads(run_child(command)[2].strip().splitlines()[-1])
               for command in launches]
    print(f"machine: {describe_device(device)}; matrix-multiply peak {peak['fp32']:.1f} "
          f"GFLOP/s fp32, {peak['bf16']:.1f} GFLOP/s bf16")
    chosen, why = choose_precision(device, args.precision)
    print(f"precision {args.precision}: {chosen} ({why})")
    print(f"the network's own training step, data already on the device: {limit:.1f} img/s "
          f"(one process)")
    pieces = f", passed in pieces of {args.micro_batch}" if args.micro_batch else ""
    print(f"data: {results[0]['train_images']} training + {results[0]['test_images']} "
          f"validation images at {SIZE[0]}x{SIZE[1]}, batch {BATCH_SIZE}{pieces} in the pipeline")
    print(f"{'way':<22}{'prec':>6}{'s/epoch':>9}{'train img/s':>13}{'of step':>9}"
          f"{'predict img/s':>15}{'peak RSS MB':>13}{'GFLOP/s':>9}{'of peak':>9}")
    for r in results:
        share = r["achieved_gflops"] / peak[r["precision"]]
        name = r["way"] if r["processes"] == 1 else f"{r['way']} x{r['processes']} proc"
        print(f"{name:<22}{r['precision']:>6}{r['epoch_seconds']:>9.1f}"
              f"{r['train_images_per_second']:>13.1f}"
              f"{r['train_images_per_second'] / limit:>9.0%}"
              f"{r['predict_images_per_second']:>15.1f}"
              f"{r['peak_rss_mb']:>13.0f}{r['achieved_gflops']:>9.1f}{share:>9.0%}")
    before = results[0]
    for after in results[1:]:
        print(f"speed-up of pipeline x{after['processes']}: epoch "
              f"{before['epoch_seconds'] / after['epoch_seconds']:.2f}x, prediction "
              f"{after['predict_images_per_second'] / before['predict_images_per_second']:.2f}x")
    print(f"(the pipeline also spent {results[1]['decode_seconds']:.1f} s once decoding "
          f"the dataset)")


def describe_device(device):
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, torch {torch.__version__}"
    return (f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} "
            f"threads, CPU capability {torch.backends.cpu.get_cpu_capability()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-path", required=True,
                        help="a folder with images/ and masks/ (e.g. ../shared/tgs-salt/train)")
    parser.add_argument("--device", default=config.DEVICE,
                        help=f"where to train (default {config.DEVICE}, as train.py would)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N pairs (0: all)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="the pipeline's precision; auto chooses as train.py does")
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1),
                        help="on a CPU, also run the pipeline as this many torchrun processes "
                             "of one thread each (default 2 where there are 2 cores; 1 skips "
                             "it)")
    parser.add_argument("--micro-batch", type=int, default=config.MICRO_BATCH_SIZE,
                        help=f"the pipeline's MICRO_BATCH_SIZE: pieces of this many images "
                             f"per pass (0: whole batches; default {config.MICRO_BATCH_SIZE}, "
                             f"as config.py)")
    parser.add_argument("--whole-process", type=int, metavar="N", default=0,
                        help="instead: time whole runs of N >= 2 epochs (start, reading, "
                             "training, saving), the tutorial's code against train.py")
    parser.add_argument("--way", choices=("tutorial", "pipeline"), help=argparse.SUPPRESS)
    parser.add_argument("--epochs", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1 or BATCH_SIZE % args.processes:
        parser.error(f"--processes must divide the batch of {BATCH_SIZE} images evenly")
    if args.micro_batch < 0:
        parser.error("--micro-batch must be 0 (whole batches) or a number of images")
    if args.whole_process == 1 or args.whole_process < 0:
        parser.error("--whole-process needs at least 2 epochs (the last one sets the pace)")
    if args.whole_process and args.limit:
        parser.error("--whole-process trains on the whole dataset: leave out --limit")
    device = torch.device(args.device)
    try:
        parts = split(args.dataset_path, args.limit)
    except DataError as error:
        parser.error(str(error))
    if args.way == "tutorial" and args.epochs:
        outcome = run_tutorial_way(parts, device, args.epochs, predict=False)
        print(json.dumps({"epoch_times": outcome["epoch_times"]}))
    elif args.way:
        result = measure(args.way, parts, device, args.precision, args.micro_batch)
        if result["main"]:
            print(json.dumps(result))
    elif args.whole_process:
        whole_processes(args, device)
    else:
        one_epoch_each(args, device)


if __name__ == "__main__":
    main()
