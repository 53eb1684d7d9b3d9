"""Train a U-Net to segment salt in seismic images.

    python train.py                          # settings from pyimagesearch/config.py
    python train.py --num-epochs 5 --dataset-path /data/tgs/train
    python train.py --resume                 # continue an interrupted run
    python train.py --help                   # every setting
"""
import os
import random
import signal
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from pyimagesearch import distributed
from pyimagesearch.augment import augmentation_seed
from pyimagesearch.budget import plan_due, recent_pace
from pyimagesearch.checkpoint import CheckpointError
from pyimagesearch.cli import build_parser, describe_settings, settings_from_args
from pyimagesearch.dataset import DataError
from pyimagesearch.engine import (TrainingDiverged, choose_precision, passes_in_pieces,
                                  reuse_freed_memory)
from pyimagesearch.files import OutputError, ensure_folder
from pyimagesearch.model import arguments_from_settings
from pyimagesearch.split import read_split
from pyimagesearch.trainer import (Progress, apply_budget, build_losses, build_parts, epoch_line,
                                   resume_run, save_epoch, train_and_validate, tune_prediction)


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _stop_on_sigterm(signum, frame):
    # `kill`, a scheduler's time limit or a closing terminal: stop like Ctrl-C
    raise KeyboardInterrupt


def main(argv=None):
    parser = build_parser(__doc__.splitlines()[0])
    parser.add_argument("--resume", action="store_true",
                        help="continue from CHECKPOINT_PATH, written after every epoch")
    args = parser.parse_args(argv)
    settings = settings_from_args(args, parser)
    reuse_freed_memory()
    previous_handler = signal.signal(signal.SIGTERM, _stop_on_sigterm)
    context = None
    try:
        context = distributed.setup(settings.DEVICE)
        if not context.is_main:
            sys.stdout = open(os.devnull, "w")  # one process reports, as in a single run
        train(settings, context, resume=args.resume)
    except (DataError, OutputError, CheckpointError, TrainingDiverged,
            distributed.LaunchError) as error:
        sys.exit(f"[ERROR] {error}")
    except KeyboardInterrupt:
        sys.exit("[INFO] interrupted: every finished epoch is saved; continue with "
                 "`python train.py --resume` and the same settings")
    finally:
        if context is not None:
            distributed.teardown(context)
        signal.signal(signal.SIGTERM, previous_handler)


def train(settings, context, resume=False):
    run_started = time.perf_counter()
    seed_everything(settings.SEED)
    if context.is_main:
        ensure_folder(settings.BASE_OUTPUT)
    # 1. Data: pair the images with their masks, split, read into memory
    trainDS, testDS = read_split(settings, context)
    on_device = data_on_device(settings, context.device)
    if on_device:
        trainDS.to(context.device)
        testDS.to(context.device)
    loaders = distributed.make_loaders(
        trainDS, testDS, settings.BATCH_SIZE, context, seed=settings.SEED,
        eval_batch_size=settings.EVAL_BATCH_SIZE, num_workers=settings.NUM_WORKERS,
        pin_memory=settings.PIN_MEMORY and not on_device)
    # 2. The network, its loss, optimizer and learning-rate schedule
    arguments = arguments_from_settings(settings)
    parts = build_parts(settings, context, arguments, loaders[0])
    losses = build_losses(settings)
    # 3. An interrupted run continues where its checkpoint left it
    progress = (resume_run(settings, parts, arguments) if resume
                else Progress(num_epochs=settings.NUM_EPOCHS))
    if progress.finished:
        budget = " and give --time-budget 0" if progress.planned_epochs else ""
        print(f"[INFO] the run already has {progress.first_epoch - 1} epochs; raise "
              f"--num-epochs{budget} to train longer")
        return
    describe_run(settings, context, progress, loaders[0].batch_size)

    # 4. Train, validate and save every epoch
    train_epochs(settings, context, parts, loaders, losses, progress, arguments, run_started)

    # 5. Every process must end with the same weights
    if not distributed.replicas_identical(parts.model, context):
        raise TrainingDiverged("the processes ended with different weights; "
                               "this is a bug, please report it")
    if context.distributed:
        print(f"[INFO] the weights are identical on all {context.world_size} processes")
    best = max(progress.history, key=lambda r: r["val_score"])
    print(f"[INFO] best validation score {best['val_score']:.4f} at epoch {best['epoch']} "
          f"(saved to {settings.MODEL_PATH}); last epoch saved to {settings.LAST_MODEL_PATH}")
    # 6. Choose the threshold and minimum salt area on the validation images
    if settings.TUNE_THRESHOLD and context.is_main and settings.NUM_CLASSES == 1:
        tune_prediction(settings, testDS, context.device)


def train_epochs(settings, context, parts, loaders, losses, progress, arguments, run_started):
    """Train and validate epoch after epoch, re-planning the epochs a time
    budget allows when due, and save every epoch's model and checkpoint."""
    bars = {} if context.is_main else {"description": None}
    # the time of earlier processes of a resumed run counts against the budget
    spent_before = sum(row["seconds"] for row in progress.history)
    epoch_ends = [time.perf_counter()]
    with tqdm(desc="epochs", unit="epoch", initial=progress.first_epoch - 1,
              total=progress.num_epochs, disable=not context.is_main) as bar:
        epoch = progress.first_epoch
        while epoch <= progress.num_epochs:
            torch.manual_seed(augmentation_seed(settings.SEED, context.rank, epoch))
            row = train_and_validate(settings, context, parts, loaders, losses, epoch,
                                     progress.num_epochs, bars)
            improved = progress.record(row)
            tqdm.write(epoch_line(row, progress.num_epochs))
            epoch_ends.append(time.perf_counter())
            if plan_due(settings, progress, epoch):
                apply_budget(settings, context, parts, progress, epoch,
                             spent_before + epoch_ends[-1] - run_started, recent_pace(epoch_ends))
                bar.total = progress.num_epochs
            if context.is_main:
                save_epoch(settings, parts, progress, arguments, row, improved)
            bar.update()
            epoch += 1


def data_on_device(settings, device):
    """Whether the dataset moves into the GPU's memory: DATA_ON_DEVICE asks
    for it, and loader workers, which would need it in main memory, are off."""
    return settings.DATA_ON_DEVICE and device.type == "cuda" and not settings.NUM_WORKERS


def describe_run(settings, context, progress, batch_size):
    """Say what the run will do, and what of the settings behaves differently
    from what one might expect on this machine."""
    device = context.device
    if settings.ADAPTED:
        print(f"[INFO] --preset {settings.PRESET} on a CPU without bf16 units: "
              f"{describe_settings(settings.ADAPTED)}, "
              "which fits more epochs in its time here (docs/results.md)")
    if context.distributed and settings.BATCH_NORM and device.type != "cuda":
        print("[INFO] batch normalisation uses each process's share of the batch: "
              "SYNC_BATCHNORM works on GPUs only")
    per_piece = [effect for effect, applies in (
        ("batch norm normalises each piece on its own", settings.BATCH_NORM),
        ("the Dice loss is computed per piece", "dice" in settings.LOSS)) if applies]
    if passes_in_pieces(settings.MICRO_BATCH_SIZE, batch_size) and per_piece:
        print(f"[INFO] batches pass in pieces of {settings.MICRO_BATCH_SIZE} images "
              f"(MICRO_BATCH_SIZE): {'; '.join(per_piece)}")
    processes = f" x {context.world_size} processes" if context.distributed else ""
    budget = (f", or as many as fit in {settings.TIME_BUDGET:g} minutes"
              if settings.TIME_BUDGET and progress.planned_epochs is None else "")
    precision, why = choose_precision(device, settings.PRECISION)
    print(f"[INFO] training the {settings.MODEL_VARIANT} U-Net for {progress.num_epochs} "
          f"epochs{budget} on {device}{processes} in {precision} ({why})")
    if device.type == "cpu" and not context.distributed and (os.cpu_count() or 1) > 1:
        print("[INFO] tip: small networks such as --preset salt's train faster on a CPU as "
              "one single-threaded process per core (docs/performance.md): "
              "torchrun --standalone --nproc_per_node 2 train.py ...")


if __name__ == "__main__":
    main()
