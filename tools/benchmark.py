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

The achieved GFLOP/s is compared with this machine's matrix-multiply peak in
the same precision, measured in the same run: the practical hardware limit.
"""
import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time

import cv2
import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms

from pyimagesearch import config, distributed
from pyimagesearch.dataset import SegmentationDataset, pair_image_mask_paths
from pyimagesearch.engine import (autocast_dtype, choose_precision, evaluate, prepare_model,
                                  reuse_freed_memory, train_one_epoch)
from pyimagesearch.inference import segment_files
from pyimagesearch.model import UNet, unet_arguments
from pyimagesearch.postprocess import PredictionRules

SIZE = (128, 128)
BATCH_SIZE = 64


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
        mask = (cv2.imread(self.mask_paths[index], cv2.IMREAD_UNCHANGED) > 0).astype(np.uint8) * 255
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


def matmul_peak(dtype, seconds=3.0):
    """Best GFLOP/s of a square matrix multiply in ``dtype``.

    Large matrices reach the peak; where the precision has no hardware support
    (bf16 on a CPU without AVX-512 BF16 or AMX) one large multiply would take
    minutes, so a small probe decides the size first.
    """
    def rate(n):
        a, b = torch.rand(n, n, dtype=dtype), torch.rand(n, n, dtype=dtype)
        started = time.perf_counter()
        a @ b
        return 2 * n ** 3 / (time.perf_counter() - started) / 1e9, a, b

    probe, _, _ = rate(256)
    n = 2048 if probe > 20 else 256
    best, a, b = rate(n)
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        a @ b
        best = max(best, 2 * n ** 3 / (time.perf_counter() - started) / 1e9)
    return best


def split(dataset_path, limit):
    images, masks = pair_image_mask_paths(os.path.join(dataset_path, "images"),
                                          os.path.join(dataset_path, "masks"))
    if limit:
        images, masks = images[:limit], masks[:limit]
    return train_test_split(images, masks, test_size=0.15, random_state=42)


def run_tutorial_way(train_images, test_images, train_masks, test_masks):
    torch.manual_seed(0)
    model = UNet(**unet_arguments(3, 1, 3, 16, SIZE, "tutorial"))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
    workers = os.cpu_count()
    train_loader = DataLoader(PerSampleDataset(train_images, train_masks), batch_size=BATCH_SIZE,
                              shuffle=True, num_workers=workers)
    test_loader = DataLoader(PerSampleDataset(test_images, test_masks), batch_size=BATCH_SIZE,
                             num_workers=workers)
    started = time.perf_counter()
    model.train()
    total_loss = 0
    for images, masks in train_loader:
        loss = loss_fn(model(images), masks)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total_loss += loss  # as in the tutorial: keeps every step's graph alive
    train_seconds = time.perf_counter() - started
    model.eval()
    with torch.no_grad():
        for images, masks in test_loader:
            loss_fn(model(images), masks)
    epoch_seconds = time.perf_counter() - started

    resize = transforms.Compose([transforms.ToPILImage(), transforms.Resize(SIZE),
                                 transforms.ToTensor()])
    started = time.perf_counter()
    with torch.no_grad():
        for path in test_images:
            image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
            torch.sigmoid(model(resize(image)[None])) > 0.5
    predict_seconds = time.perf_counter() - started
    # nothing is decoded ahead: the tutorial decodes inside every epoch
    return model, 3, None, train_seconds, epoch_seconds, predict_seconds, 0.0


def run_pipeline_way(train_images, test_images, train_masks, test_masks, precision,
                     micro_batch):
    """This pipeline's way; under torchrun each process takes its share of the
    work, and the times are those of the slowest process."""
    reuse_freed_memory()
    context = distributed.setup("cpu")
    torch.manual_seed(0)
    device = context.device
    dtype = autocast_dtype(device, precision)
    started = time.perf_counter()
    train_set = SegmentationDataset(train_images, train_masks, size=SIZE, num_channels=1)
    test_set = SegmentationDataset(test_images, test_masks, size=SIZE, num_channels=1)
    decode_seconds = time.perf_counter() - started
    arguments = unet_arguments(1, 1, 3, 16, SIZE, "tutorial")
    model = prepare_model(UNet(**arguments), device, channels_last=True)
    unet = distributed.wrap_model(model, context, sync_batchnorm=False)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    optimizer = torch.optim.Adam(unet.parameters(), lr=0.001)
    fast = {"dtype": dtype, "channels_last": True, "description": None}
    train_loader, test_loader = distributed.make_loaders(
        train_set, test_set, BATCH_SIZE, context, seed=0,
        eval_batch_size=config.EVAL_BATCH_SIZE)
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
    predict_seconds = time.perf_counter() - started
    return (model, 1, dtype, train_seconds, epoch_seconds, predict_seconds, decode_seconds,
            context)


def measure(way, dataset_path, limit, precision, micro_batch):
    parts = split(dataset_path, limit)
    if way == "tutorial":
        outcome = run_tutorial_way(*parts) + (distributed.Context(),)
    else:
        outcome = run_pipeline_way(*parts, precision, micro_batch)
    model, channels, dtype, train_s, epoch_s, predict_s, decode_s, context = outcome
    # the slowest process sets the pace; the memory of all of them is the machine's
    times = distributed.all_reduce_max(torch.tensor([train_s, epoch_s, predict_s]), context)
    train_s, epoch_s, predict_s = times.tolist()
    # ru_maxrss is in KiB on Linux
    peak_kib = torch.tensor(float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
    peak_mb = distributed.all_reduce_sum(peak_kib, context).item() / 1024
    distributed.teardown(context)
    n_train, n_test = len(parts[0]), len(parts[1])
    train_flops = flops_per_image(model.float().to(memory_format=torch.contiguous_format),
                                  channels, backward=True)
    return {"way": way, "processes": context.world_size,
            "precision": "bf16" if dtype == torch.bfloat16 else "fp32",
            "train_images": n_train, "test_images": n_test,
            "decode_seconds": decode_s, "epoch_seconds": epoch_s,
            "train_images_per_second": n_train / train_s,
            "predict_images_per_second": n_test / predict_s,
            "train_gflops_per_image": train_flops / 1e9,
            "achieved_gflops": train_flops * n_train / train_s / 1e9,
            "peak_rss_mb": peak_mb, "main": context.is_main}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-path", required=True,
                        help="a folder with images/ and masks/ (e.g. ../shared/tgs-salt/train)")
    parser.add_argument("--limit", type=int, default=0,
                        help="use only the first N pairs (0: all)")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16"),
                        help="the pipeline's precision; auto chooses as train.py does")
    parser.add_argument("--processes", type=int, default=min(2, os.cpu_count() or 1),
                        help="also run the pipeline as this many torchrun processes of one "
                             "thread each (default 2 where there are 2 cores; 1 skips it)")
    parser.add_argument("--micro-batch", type=int, default=config.MICRO_BATCH_SIZE,
                        help=f"the pipeline's MICRO_BATCH_SIZE: pieces of this many images "
                             f"per pass (0: whole batches; default {config.MICRO_BATCH_SIZE}, "
                             f"as config.py)")
    parser.add_argument("--way", choices=("tutorial", "pipeline"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.processes < 1 or BATCH_SIZE % args.processes:
        parser.error(f"--processes must divide the batch of {BATCH_SIZE} images evenly")
    if args.micro_batch < 0:
        parser.error("--micro-batch must be 0 (whole batches) or a number of images")
    if args.way:
        result = measure(args.way, args.dataset_path, args.limit, args.precision,
                         args.micro_batch)
        if result["main"]:
            print(json.dumps(result))
        return

    peak = {"fp32": matmul_peak(torch.float32), "bf16": matmul_peak(torch.bfloat16)}
    module = ["-m", "tools.benchmark", "--dataset-path", args.dataset_path,
              "--limit", str(args.limit), "--precision", args.precision,
              "--micro-batch", str(args.micro_batch)]
    launches = [[sys.executable, *module, "--way", "tutorial"],
                [sys.executable, *module, "--way", "pipeline"]]
    if args.processes > 1:
        launches.append([sys.executable, "-m", "torch.distributed.run", "--standalone",
                         f"--nproc_per_node={args.processes}", *module, "--way", "pipeline"])
    results = []
    for command in launches:
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(output.strip().splitlines()[-1]))
    print(f"machine: {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, CPU capability "
          f"{torch.backends.cpu.get_cpu_capability()}; matrix-multiply peak "
          f"{peak['fp32']:.1f} GFLOP/s fp32, {peak['bf16']:.1f} GFLOP/s bf16")
    chosen, why = choose_precision("cpu", args.precision)
    print(f"precision {args.precision}: {chosen} ({why})")
    pieces = f", passed in pieces of {args.micro_batch}" if args.micro_batch else ""
    print(f"data: {results[0]['train_images']} training + {results[0]['test_images']} "
          f"validation images at {SIZE[0]}x{SIZE[1]}, batch {BATCH_SIZE}{pieces} in the pipeline")
    header = (f"{'way':<22}{'prec':>6}{'s/epoch':>9}{'train img/s':>13}{'predict img/s':>15}"
              f"{'peak RSS MB':>13}{'GFLOP/s':>9}{'of peak':>9}")
    print(header)
    for r in results:
        share = r["achieved_gflops"] / peak[r["precision"]]
        name = r["way"] if r["processes"] == 1 else f"{r['way']} x{r['processes']} proc"
        print(f"{name:<22}{r['precision']:>6}{r['epoch_seconds']:>9.1f}"
              f"{r['train_images_per_second']:>13.1f}{r['predict_images_per_second']:>15.1f}"
              f"{r['peak_rss_mb']:>13.0f}{r['achieved_gflops']:>9.1f}{share:>9.0%}")
    before = results[0]
    for after in results[1:]:
        print(f"speed-up of pipeline x{after['processes']}: epoch "
              f"{before['epoch_seconds'] / after['epoch_seconds']:.2f}x, prediction "
              f"{after['predict_images_per_second'] / before['predict_images_per_second']:.2f}x")
    print(f"(the pipeline also spent {results[1]['decode_seconds']:.1f} s once decoding "
          f"the dataset)")


if __name__ == "__main__":
    main()
