"""Train a U-Net to segment salt in seismic images.

    python train.py                          # settings from pyimagesearch/config.py
    python train.py --num-epochs 5 --dataset-path /data/tgs/train
    python train.py --resume                 # continue an interrupted run
    python train.py --help                   # every setting
"""
import functools
import math
import os
import random
import shutil
import signal
import sys
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch.utils.data import DataLoader
from tqdm import tqdm

from pyimagesearch import config, distributed, synthetic
from pyimagesearch.augment import augmentation_seed, training_transforms
from pyimagesearch.checkpoint import (CheckpointError, load_model, load_training_state,
                                      restore_rng, save_model, save_training_state)
from pyimagesearch.cli import build_parser, settings_from_args
from pyimagesearch.dataset import (DataError, SegmentationDataset, list_image_files,
                                   pair_image_mask_paths)
from pyimagesearch.engine import (TrainingDiverged, autocast_dtype, collect_probabilities,
                                  evaluate, passes_in_pieces, prepare_model, reuse_freed_memory,
                                  train_one_epoch, weight_average)
from pyimagesearch.files import OutputError, ensure_folder, write_csv, write_text
from pyimagesearch.losses import CombinedLoss
from pyimagesearch.metrics import competition_score_per_image
from pyimagesearch.model import UNet, arguments_from_settings
from pyimagesearch.optim import build_optimizer, build_scheduler, epochs_within_budget
from pyimagesearch.plots import plot_history
from pyimagesearch.postprocess import cross_fitted_score, is_blank, to_masks, tune

STOCK_IMAGE_FOLDER = os.path.join(config.PROJECT_ROOT, "dataset", "train", "images")
# with a TIME_BUDGET, the epochs timed before the run decides how many fit
PLAN_AFTER_EPOCHS = 3


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def dataset_folders(settings):
    """(image folder, mask folder); the built-in synthetic data stands in only
    for the project's own empty dataset/train, never for a folder the user chose."""
    image_folder, mask_folder = settings.IMAGE_DATASET_PATH, settings.MASK_DATASET_PATH
    stock = (os.path.abspath(image_folder) == STOCK_IMAGE_FOLDER
             and not settings.GIVEN & {"DATASET_PATH", "IMAGE_DATASET_PATH"})
    if stock and not (os.path.isdir(image_folder) and list_image_files(image_folder)):
        folder = settings.SYNTHETIC_DATASET_PATH
        print(f"[INFO] {image_folder} holds no images: training on built-in synthetic "
              f"salt data in {folder} (see README to use the real TGS data)")
        images, masks = os.path.join(folder, "images"), os.path.join(folder, "masks")
        existing = list_image_files(images) if os.path.isdir(images) else []
        if len(existing) != settings.SYNTHETIC_NUM_IMAGES:
            # the folder is the project's own output: regenerate it whole
            for kind in (images, masks):
                shutil.rmtree(kind, ignore_errors=True)
            synthetic.write_dataset(folder, settings.SYNTHETIC_NUM_IMAGES, seed=settings.SEED,
                                    progress=True)
        return images, masks
    return image_folder, mask_folder


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


def read_split(settings, context):
    """Pair the images with their masks, hold out TEST_SPLIT for validation,
    read both parts into memory and record the held-out pairs in TEST_PATHS."""
    if context.is_main:
        image_folder, mask_folder = dataset_folders(settings)
    distributed.barrier(context)  # the main process may be generating data
    if not context.is_main:
        image_folder, mask_folder = dataset_folders(settings)
    imagePaths, maskPaths = pair_image_mask_paths(image_folder, mask_folder)
    # train_test_split holds out ceil(TEST_SPLIT * n) images
    if len(imagePaths) - math.ceil(len(imagePaths) * settings.TEST_SPLIT) < 1:
        raise DataError(f"{len(imagePaths)} image(s) with TEST_SPLIT {settings.TEST_SPLIT} "
                        f"leave no image for training or for validation; add images or "
                        f"change --test-split")
    trainImages, testImages, trainMasks, testMasks = train_test_split(
        imagePaths, maskPaths, test_size=settings.TEST_SPLIT, random_state=settings.SEED)

    print(f"[INFO] reading {len(imagePaths)} images from {image_folder}")
    reading = {"size": (settings.INPUT_IMAGE_HEIGHT, settings.INPUT_IMAGE_WIDTH),
               "num_channels": settings.NUM_CHANNELS,
               "skip_bad_files": settings.SKIP_BAD_FILES, "progress": context.is_main}
    transforms = training_transforms(reading["size"], settings.AUGMENT)
    trainDS = SegmentationDataset(trainImages, trainMasks, transforms, **reading)
    testDS = SegmentationDataset(testImages, testMasks, **reading)
    skipped = trainDS.skipped + testDS.skipped
    if skipped:
        print(f"[WARN] skipped {len(skipped)} unreadable image/mask pair(s) "
              f"(SKIP_BAD_FILES): {'; '.join(skipped[:3])}" + (" ..." if len(skipped) > 3 else ""))
    if not len(trainDS) or not len(testDS):
        raise DataError("after skipping unreadable files no image is left for "
                        + ("training" if not len(trainDS) else "validation"))
    print(f"[INFO] {len(trainDS)} images for training, {len(testDS)} for validation")
    if context.is_main:
        write_text(settings.TEST_PATHS, "".join(
            f"{image}\t{mask}\n" for image, mask in zip(testDS.imagePaths, testDS.maskPaths)))
    return trainDS, testDS


def train(settings, context, resume=False):
    run_started = time.perf_counter()
    seed_everything(settings.SEED)
    device = context.device
    if context.is_main:
        ensure_folder(settings.BASE_OUTPUT)
    trainDS, testDS = read_split(settings, context)
    trainLoader, testLoader = distributed.make_loaders(
        trainDS, testDS, settings.BATCH_SIZE, context, seed=settings.SEED,
        eval_batch_size=settings.EVAL_BATCH_SIZE,
        num_workers=settings.NUM_WORKERS, pin_memory=settings.PIN_MEMORY)
    # the generator that orders a single process's batches; a distributed
    # sampler orders them from SEED and the epoch number instead
    shuffle_generator = trainLoader.generator or torch.Generator()

    arguments = arguments_from_settings(settings)
    model = prepare_model(UNet(**arguments), device, settings.CHANNELS_LAST)
    # DistributedDataParallel keeps the processes' weights equal by averaging
    # gradients; evaluation uses the bare model, whose forward needs no peers
    unet = distributed.wrap_model(model, context, settings.SYNC_BATCHNORM)
    if context.distributed and settings.BATCH_NORM and device.type != "cuda":
        print("[INFO] batch normalisation uses each process's share of the batch: "
              "SYNC_BATCHNORM works on GPUs only")
    per_piece = [effect for effect, applies in (
        ("batch norm normalises each piece on its own", settings.BATCH_NORM),
        ("the Dice loss is computed per piece", "dice" in settings.LOSS)) if applies]
    if passes_in_pieces(settings.MICRO_BATCH_SIZE, trainLoader.batch_size) and per_piece:
        print(f"[INFO] batches pass in pieces of {settings.MICRO_BATCH_SIZE} images "
              f"(MICRO_BATCH_SIZE): {'; '.join(per_piece)}")
    # with EMA_DECAY the average is what is validated and saved; the training
    # checkpoint keeps both, so that --resume continues each
    average = weight_average(model, settings.EMA_DECAY)
    evaluated = average.module if average is not None else model
    lossFunc = CombinedLoss(settings.LOSS)
    opt = build_optimizer(settings, unet.parameters())
    scheduler = build_scheduler(settings, opt, len(trainLoader))
    dtype = autocast_dtype(device, settings.PRECISION)
    scaler = torch.amp.GradScaler(device.type) if dtype == torch.float16 else None
    fast = {"dtype": dtype, "channels_last": settings.CHANNELS_LAST}
    prediction = {"threshold": settings.THRESHOLD, "min_area": settings.MIN_SALT_AREA,
                  "tta": settings.TTA}

    history, best_score, first_epoch = [], -1.0, 1
    num_epochs, planned_epochs = settings.NUM_EPOCHS, None
    if resume:
        state = load_training_state(settings.CHECKPOINT_PATH, arguments)
        if settings.TIME_BUDGET and state.get("planned_epochs"):
            # built before the optimizer's state is loaded, which holds the rate to go on with
            num_epochs = planned_epochs = min(state["planned_epochs"], num_epochs)
            scheduler = build_scheduler(settings, opt, len(trainLoader), num_epochs)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state["scaler"] is not None:
            scaler.load_state_dict(state["scaler"])
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
        if average is not None:
            if state.get("average") is None:
                raise CheckpointError(f"{settings.CHECKPOINT_PATH} was trained without "
                                      f"EMA_DECAY; resume with --ema-decay 0 or start afresh")
            average.load_state_dict(state["average"])
        restore_rng(state, shuffle_generator)
        history, best_score, first_epoch = state["history"], state["best_score"], state["epoch"] + 1
        print(f"[INFO] resuming after epoch {state['epoch']} from {settings.CHECKPOINT_PATH}")
        if first_epoch > num_epochs:
            budget = " and give --time-budget 0" if planned_epochs else ""
            print(f"[INFO] the run already has {state['epoch']} epochs; raise --num-epochs"
                  f"{budget} to train longer")
            return

    processes = f" x {context.world_size} processes" if context.distributed else ""
    budget = (f", or as many as fit in {settings.TIME_BUDGET:g} minutes"
              if settings.TIME_BUDGET and planned_epochs is None else "")
    print(f"[INFO] training the {settings.MODEL_VARIANT} U-Net for {num_epochs} "
          f"epochs{budget} on {device}{processes}")
    if device.type == "cpu" and not context.distributed and (os.cpu_count() or 1) > 1:
        print("[INFO] tip: small networks such as --preset salt's train faster on a CPU as "
              "one single-threaded process per core (1.55x on 2 cores, README "
              "\"Performance\"): torchrun --standalone --nproc_per_node 2 train.py ...")
    bars = {} if context.is_main else {"description": None}
    reduce_sum = functools.partial(distributed.all_reduce_sum, context=context)
    reduce_max = functools.partial(distributed.all_reduce_max, context=context)
    # the time of earlier processes of a resumed run counts against the budget
    spent_before = sum(row["seconds"] for row in history)
    loop_started = time.perf_counter()
    with tqdm(desc="epochs", unit="epoch", initial=first_epoch - 1, total=num_epochs,
              disable=not context.is_main) as bar:
        epoch = first_epoch
        while epoch <= num_epochs:
            started = time.perf_counter()
            torch.manual_seed(augmentation_seed(settings.SEED, context.rank, epoch))
            if context.distributed:
                trainLoader.sampler.set_epoch(epoch)
            train_loss = train_one_epoch(unet, trainLoader, lossFunc, opt, device,
                                         scaler=scaler, scheduler=scheduler, average=average,
                                         micro_batch=settings.MICRO_BATCH_SIZE,
                                         max_grad_norm=settings.GRAD_CLIP,
                                         reduce_sum=reduce_sum, **fast, **bars)
            distributed.share_buffers(evaluated, context)
            # the epochs are ranked without mirror images, which would double
            # validation's cost every epoch; the tuning after training uses them
            totals = evaluate(evaluated, testLoader, lossFunc, device, settings.THRESHOLD,
                              **fast, **bars)
            totals.sums = reduce_sum(totals.sums)
            val = totals.means()
            row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
                   "val_iou": val["iou"], "val_dice": val["dice"], "val_score": val["score"],
                   "seconds": time.perf_counter() - started}
            history.append(row)
            tqdm.write(f"[INFO] epoch {epoch}/{num_epochs}  train loss {train_loss:.4f}  "
                       f"val loss {val['loss']:.4f}  IoU {val['iou']:.4f}  "
                       f"Dice {val['dice']:.4f}  score {val['score']:.4f}  "
                       f"({row['seconds']:.1f} s)")
            if (settings.TIME_BUDGET and planned_epochs is None
                    and PLAN_AFTER_EPOCHS <= epoch < num_epochs):
                now = time.perf_counter()
                num_epochs = planned_epochs = fit_budget(
                    settings, epoch, num_epochs, spent_before + now - run_started,
                    (now - loop_started) / (epoch - first_epoch + 1), reduce_max)
                bar.total = num_epochs
                scheduler = build_scheduler(settings, opt, len(trainLoader), num_epochs,
                                            steps_done=epoch * len(trainLoader))

            improved = val["score"] > best_score
            best_score = max(best_score, val["score"])
            if context.is_main:
                # everything is written every epoch, so an interrupted run loses at
                # most the epoch in progress; the checkpoint goes last, so that a run
                # resumed from it finds every other file of its epoch already written
                metadata = {"epoch": epoch, "metrics": val, "settings": _plain(settings),
                            "prediction": prediction}
                save_model(settings.LAST_MODEL_PATH, evaluated, arguments, **metadata)
                if improved:
                    save_model(settings.MODEL_PATH, evaluated, arguments, **metadata)
                write_csv(settings.HISTORY_PATH, history)
                plot_history(history, settings.PLOT_PATH)
                save_training_state(settings.CHECKPOINT_PATH, model=model, optimizer=opt,
                                    arguments=arguments, epoch=epoch, history=history,
                                    best_score=best_score, loader_generator=shuffle_generator,
                                    scaler=scaler, scheduler=scheduler, average=average,
                                    planned_epochs=planned_epochs)
            bar.update()
            epoch += 1
    if not distributed.replicas_identical(model, context):
        raise TrainingDiverged("the processes ended with different weights; "
                               "this is a bug, please report it")
    if context.distributed:
        print(f"[INFO] the weights are identical on all {context.world_size} processes")
    best = max(history, key=lambda r: r["val_score"])
    print(f"[INFO] best validation score {best['val_score']:.4f} at epoch {best['epoch']} "
          f"(saved to {settings.MODEL_PATH}); last epoch saved to {settings.LAST_MODEL_PATH}")
    if settings.TUNE_THRESHOLD and context.is_main:
        tune_prediction(settings, testDS, device, fast)


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


def tune_prediction(settings, testDS, device, fast):
    """Choose THRESHOLD and MIN_SALT_AREA for the best model on the validation
    images and store them in its file, where predict.py finds them."""
    best_model, arguments, metadata = load_model(settings.MODEL_PATH, device)
    best_model = prepare_model(best_model, device, settings.CHANNELS_LAST)
    loader = DataLoader(testDS, batch_size=settings.EVAL_BATCH_SIZE)
    probabilities, targets, images = collect_probabilities(
        best_model, loader, device, tta=settings.TTA, **fast)
    blank = is_blank(images)
    plain = competition_score_per_image(
        to_masks(probabilities, settings.THRESHOLD, settings.MIN_SALT_AREA), targets).mean()
    threshold, min_area, tuned = tune(probabilities, targets, blank)
    unbiased = cross_fitted_score(probabilities, targets, blank, seed=settings.SEED)
    metadata["prediction"] = {"threshold": threshold, "min_area": min_area, "tta": settings.TTA}
    metadata["tuning"] = {"plain_score": plain.item(), "tuned_score": tuned,
                          "cross_fitted_score": unbiased}
    save_model(settings.MODEL_PATH, best_model, arguments, **metadata)
    halves = (f"{unbiased:.4f} when tuned on one half and scored on the other" if unbiased
              is not None else "too few images to tune on one half and score the other")
    print(f"[INFO] tuned on the {len(testDS)} validation images: threshold {threshold}, "
          f"minimum salt area {min_area} px, blank images empty; score {plain.item():.4f} "
          f"-> {tuned:.4f} ({halves}); stored in {settings.MODEL_PATH}")


def _plain(settings):
    """The settings as plain values that weights_only loading accepts."""
    return {name: value for name, value in vars(settings).items()
            if isinstance(value, (str, int, float, bool))}


if __name__ == "__main__":
    main()
