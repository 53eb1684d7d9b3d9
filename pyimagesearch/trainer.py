"""A training run's parts and what happens around its epochs: building them,
resuming them from a checkpoint, one epoch of training and validation, saving
it, and tuning the prediction rules at the end. train.py calls these in order.
"""
import dataclasses
import functools
import time
from typing import Optional

import torch
from torch.utils.data import DataLoader

from pyimagesearch import distributed
from pyimagesearch.budget import fit_budget
from pyimagesearch.checkpoint import (CheckpointError, load_model, load_training_state,
                                      restore_rng, save_model, save_training_state)
from pyimagesearch.engine import (autocast_dtype, collect_probabilities, equal_average,
                                  evaluate, prepare_model, train_one_epoch, weight_average)
from pyimagesearch.files import write_csv
from pyimagesearch.losses import CombinedLoss, DeepSupervisionLoss
from pyimagesearch.metrics import competition_score_per_image
from pyimagesearch.model import UNet
from pyimagesearch.optim import build_optimizer, build_scheduler, in_last_epochs
from pyimagesearch.plots import plot_history
from pyimagesearch.postprocess import (PredictionRules, cross_fitted_score, is_blank, to_masks,
                                       tune)


@dataclasses.dataclass
class Parts:
    """What a run trains, and what a checkpoint saves and --resume restores."""
    model: torch.nn.Module  # the bare network
    unet: torch.nn.Module  # what trains: the network, wrapped for torchrun
    # the weight average (EMA_DECAY, after every step; SWA_SHARE, after each of
    # the last epochs), or None
    average: Optional[torch.nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: Optional[torch.optim.lr_scheduler.LRScheduler]
    scaler: Optional[torch.amp.GradScaler]
    # orders a single process's batches; torchrun's sampler orders them from
    # SEED and the epoch number instead
    shuffle_generator: torch.Generator
    steps_per_epoch: int

    @property
    def evaluated(self):
        """The weights validated and saved: the average once it has any."""
        if self.average is not None and self.average.n_averaged > 0:
            return self.average.module
        return self.model


@dataclasses.dataclass
class Progress:
    """Where a run stands: its epochs so far and how many it trains."""
    num_epochs: int
    history: list = dataclasses.field(default_factory=list)
    best_score: float = -1.0
    first_epoch: int = 1
    planned_epochs: Optional[int] = None  # the budget's latest decision

    @property
    def finished(self):
        return self.first_epoch > self.num_epochs

    def record(self, row):
        """Add an epoch's history row; whether it is the best epoch so far."""
        self.history.append(row)
        improved = row["val_score"] > self.best_score
        self.best_score = max(self.best_score, row["val_score"])
        return improved


@dataclasses.dataclass
class Losses:
    """LOSS, and FINAL_LOSS for the last FINAL_LOSS_SHARE of the epochs."""
    main: torch.nn.Module
    final: torch.nn.Module
    final_share: float

    def training(self, epoch, num_epochs):
        return self.final if in_last_epochs(epoch, num_epochs, self.final_share) else self.main

    @property
    def validation(self):
        # one loss throughout, so that the validation curve means one thing
        return self.main


def build_losses(settings):
    def build(name):
        loss = CombinedLoss(name, settings.NUM_CLASSES)
        return DeepSupervisionLoss(loss) if settings.DEEP_SUPERVISION else loss
    return Losses(build(settings.LOSS), build(settings.FINAL_LOSS), settings.FINAL_LOSS_SHARE)


# the ways a run can average its weights, as --resume names them
AVERAGE_KINDS = {"ema": "an exponential moving average (--ema-decay)",
                 "swa": "an equal average of the last epochs (--swa-share)"}


def average_kind(settings):
    """Which of AVERAGE_KINDS the settings ask for, or None."""
    if settings.SWA_SHARE:
        return "swa"
    return "ema" if settings.EMA_DECAY else None


def build_parts(settings, context, arguments, train_loader):
    device = context.device
    distributed.check_same_network(arguments, context)
    model = prepare_model(UNet(**arguments), device, settings.CHANNELS_LAST)
    # DistributedDataParallel keeps the processes' weights equal by averaging
    # gradients; evaluation uses the bare model, whose forward needs no peers
    unet = distributed.wrap_model(model, context, settings.SYNC_BATCHNORM)
    optimizer = build_optimizer(settings, unet.parameters())
    dtype = autocast_dtype(device, settings.PRECISION)
    average = (equal_average(model) if average_kind(settings) == "swa"
               else weight_average(model, settings.EMA_DECAY))
    return Parts(model=model, unet=unet, average=average,
                 optimizer=optimizer,
                 scheduler=build_scheduler(settings, optimizer, len(train_loader)),
                 scaler=torch.amp.GradScaler(device.type) if dtype == torch.float16 else None,
                 shuffle_generator=train_loader.generator or torch.Generator(),
                 steps_per_epoch=len(train_loader))


def resume_run(settings, parts, arguments):
    """Restore ``parts`` from CHECKPOINT_PATH; the run's Progress there."""
    state = load_training_state(settings.CHECKPOINT_PATH, arguments)
    progress = Progress(num_epochs=settings.NUM_EPOCHS, history=state["history"],
                        best_score=state["best_score"], first_epoch=state["epoch"] + 1)
    if settings.TIME_BUDGET and state.get("planned_epochs"):
        progress.num_epochs = progress.planned_epochs = min(state["planned_epochs"],
                                                            settings.NUM_EPOCHS)
        # built before the optimizer's state is loaded, which holds the rate to go on with
        parts.scheduler = build_scheduler(settings, parts.optimizer, parts.steps_per_epoch,
                                          progress.num_epochs)
    parts.model.load_state_dict(state["model"])
    parts.optimizer.load_state_dict(state["optimizer"])
    if parts.scaler is not None and state["scaler"] is not None:
        parts.scaler.load_state_dict(state["scaler"])
    if parts.scheduler is not None and state.get("scheduler") is not None:
        parts.scheduler.load_state_dict(state["scheduler"])
    if parts.average is not None:
        check_average_kind(settings, state)
        parts.average.load_state_dict(state["average"])
    restore_rng(state, parts.shuffle_generator)
    print(f"[INFO] resuming after epoch {state['epoch']} from {settings.CHECKPOINT_PATH}")
    return progress


def check_average_kind(settings, state):
    """Refuse to go on averaging with another kind of average than the
    checkpoint's: both have the network's shape, so one would load into the
    other without a word."""
    wanted = average_kind(settings)
    if state.get("average") is None:
        raise CheckpointError(f"{settings.CHECKPOINT_PATH} was trained without a weight "
                              f"average; resume with --ema-decay 0 --swa-share 0 or start "
                              f"afresh")
    saved = state.get("average_kind")
    if saved is not None and saved != wanted:
        held = AVERAGE_KINDS.get(saved, saved)
        raise CheckpointError(f"{settings.CHECKPOINT_PATH} holds {held}, this run asks for "
                              f"{AVERAGE_KINDS[wanted]}; resume with the checkpoint's "
                              f"averaging or start afresh")


def train_and_validate(settings, context, parts, loaders, losses, epoch, num_epochs, bars):
    """Epoch ``epoch`` of ``num_epochs``, trained and validated over every
    process; its history row."""
    started = time.perf_counter()
    train_loader, test_loader = loaders
    device = context.device
    fast = fast_options(settings, device)
    if context.distributed:
        train_loader.sampler.set_epoch(epoch)
    reduce_sum = functools.partial(distributed.all_reduce_sum, context=context)
    per_step_average = None if settings.SWA_SHARE else parts.average
    train_loss = train_one_epoch(parts.unet, train_loader, losses.training(epoch, num_epochs),
                                 parts.optimizer, device,
                                 scaler=parts.scaler, scheduler=parts.scheduler,
                                 average=per_step_average,
                                 micro_batch=settings.MICRO_BATCH_SIZE,
                                 max_grad_norm=settings.GRAD_CLIP, reduce_sum=reduce_sum,
                                 **fast, **bars)
    if settings.SWA_SHARE and in_last_epochs(epoch, num_epochs, settings.SWA_SHARE):
        parts.average.update_parameters(parts.model)
    distributed.share_buffers(parts.evaluated, context)
    # the epochs are ranked without mirror images, which would double
    # validation's cost every epoch; the tuning after training uses them
    totals = evaluate(parts.evaluated, test_loader, losses.validation, device, settings.THRESHOLD,
                      num_classes=settings.NUM_CLASSES, **fast, **bars)
    totals.sums = reduce_sum(totals.sums)
    val = totals.means()
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val["loss"],
           "val_iou": val["iou"], "val_dice": val["dice"], "val_score": val["score"]}
    for name in ("iou", "dice"):
        for index, value in enumerate(val.get(f"{name}_per_class", ())):
            row[f"val_{name}_{index}"] = value
    row["seconds"] = time.perf_counter() - started
    return row


def epoch_line(row, num_epochs):
    per_class = " ".join(f"{value:.3f}" for name, value in row.items()
                         if name.startswith("val_iou_"))
    return (f"[INFO] epoch {row['epoch']}/{num_epochs}  train loss {row['train_loss']:.4f}  "
            f"val loss {row['val_loss']:.4f}  IoU {row['val_iou']:.4f}"
            + (f" (per class {per_class})" if per_class else "")
            + f"  Dice {row['val_dice']:.4f}  score {row['val_score']:.4f}  "
            f"({row['seconds']:.1f} s)")


def apply_budget(settings, context, parts, progress, epoch, spent_seconds, epoch_seconds):
    """Decide the number of epochs that fit TIME_BUDGET, and stretch or
    shrink the learning-rate schedule to end with them."""
    progress.num_epochs = progress.planned_epochs = fit_budget(
        settings, epoch, settings.NUM_EPOCHS, spent_seconds, epoch_seconds,
        functools.partial(distributed.all_reduce_max, context=context))
    parts.scheduler = build_scheduler(
        settings, parts.optimizer, parts.steps_per_epoch, progress.num_epochs,
        steps_done=epoch * parts.steps_per_epoch)


def fast_options(settings, device):
    """The speed settings that the loops of engine.py take."""
    return {"dtype": autocast_dtype(device, settings.PRECISION),
            "channels_last": settings.CHANNELS_LAST}


def save_epoch(settings, parts, progress, arguments, row, improved):
    """Write everything an epoch leaves: the last model, the best one if this
    epoch is best, the history and its plot, and the training checkpoint.

    Everything is written every epoch, so an interrupted run loses at most
    the epoch in progress; the checkpoint goes last, so that a run resumed
    from it finds every other file of its epoch already written.
    """
    metrics = {name: row[f"val_{name}"] for name in ("loss", "iou", "dice", "score")}
    metadata = {"epoch": row["epoch"], "metrics": metrics, "settings": plain_settings(settings),
                "prediction": PredictionRules.for_model(settings).as_dict()}
    save_model(settings.LAST_MODEL_PATH, parts.evaluated, arguments, **metadata)
    if improved:
        save_model(settings.MODEL_PATH, parts.evaluated, arguments, **metadata)
    write_csv(settings.HISTORY_PATH, progress.history)
    plot_history(progress.history, settings.PLOT_PATH)
    save_training_state(settings.CHECKPOINT_PATH, model=parts.model, optimizer=parts.optimizer,
                        arguments=arguments, epoch=row["epoch"], history=progress.history,
                        best_score=progress.best_score, loader_generator=parts.shuffle_generator,
                        scaler=parts.scaler, scheduler=parts.scheduler, average=parts.average,
                        average_kind=average_kind(settings),
                        planned_epochs=progress.planned_epochs)


def plain_settings(settings):
    """The settings as plain values that weights_only loading accepts."""
    return {name: value for name, value in vars(settings).items()
            if isinstance(value, (str, int, float, bool))}


def tune_prediction(settings, testDS, device):
    """Choose THRESHOLD and MIN_SALT_AREA for the best model on the validation
    images and store them in its file, where predict.py finds them."""
    best_model, arguments, metadata = load_model(settings.MODEL_PATH, device)
    best_model = prepare_model(best_model, device, settings.CHANNELS_LAST)
    loader = DataLoader(testDS, batch_size=settings.EVAL_BATCH_SIZE)
    probabilities, targets, images = collect_probabilities(
        best_model, loader, device, tta=settings.TTA, **fast_options(settings, device))
    blank = is_blank(images)
    plain = competition_score_per_image(
        to_masks(probabilities, settings.THRESHOLD, settings.MIN_SALT_AREA), targets).mean()
    threshold, min_area, tuned = tune(probabilities, targets, blank)
    unbiased = cross_fitted_score(probabilities, targets, blank, seed=settings.SEED)
    metadata["prediction"] = PredictionRules(threshold, min_area, settings.TTA).as_dict()
    metadata["tuning"] = {"plain_score": plain.item(), "tuned_score": tuned,
                          "cross_fitted_score": unbiased}
    save_model(settings.MODEL_PATH, best_model, arguments, **metadata)
    halves = (f"{unbiased:.4f} when tuned on one half and scored on the other" if unbiased
              is not None else "too few images to tune on one half and score the other")
    print(f"[INFO] tuned on the {len(testDS)} validation images: threshold {threshold}, "
          f"minimum salt area {min_area} px, blank images empty; score {plain.item():.4f} "
          f"-> {tuned:.4f} ({halves}); stored in {settings.MODEL_PATH}")
