"""The loops that train or evaluate one epoch, shared by the scripts, the
benchmark and the tests, and the batch prediction they all use."""
import contextlib
import ctypes
import ctypes.util
import math

import torch
from torch.optim.swa_utils import AveragedModel
from tqdm import tqdm

from pyimagesearch import hardware
from pyimagesearch.metrics import ClassTotals, MetricTotals


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


# the allowed values of PRECISION; "auto" chooses per device (autocast_dtype)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# parameters of glibc's mallopt (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def reuse_freed_memory():
    """Make glibc keep freed memory for the next batch instead of returning it.

    Every training step frees and allocates again the same few megabytes of
    activations. By default glibc hands blocks that large back to the system
    and takes fresh pages for the next batch, each of which faults in on first
    touch: on the salt preset about an eighth of an epoch's time
    (docs/performance.md). Returns False where the C library is not
    glibc, which keeps its own allocator.
    """
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c")).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # blocks up to 32 MB (glibc's ceiling) come from the heap, and up to 1 GB
    # of free heap stays with the process
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))


def choose_precision(device, precision):
    """(precision, why): PRECISION as given, or what "auto" picks on ``device``:
    bf16 where the hardware computes it, else fp32 (emulated bf16 is slower)."""
    device = torch.device(device)
    if precision != "auto":
        return precision, "as PRECISION says"
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return "bf16", "the GPU computes bf16"
        return "fp32", "the GPU has no bf16"
    if device.type == "cpu" and hardware.cpu_has_native_bf16():
        return "bf16", "the CPU has bf16 units: AVX512_BF16 or AMX"
    return "fp32", "this device has no bf16 units"


def autocast_dtype(device, precision):
    """The autocast dtype for ``precision`` on ``device``, or None for plain fp32."""
    device = torch.device(device)
    precision, _ = choose_precision(device, precision)
    if precision == "fp16" and device.type == "cpu":
        raise ValueError("fp16 autocast is for GPUs; use PRECISION bf16 or fp32 on the CPU")
    return _DTYPES.get(precision)


def _autocast(device, dtype):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def prepare_model(model, device, channels_last):
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def weight_average(model, decay):
    """An exponential moving average of ``model``'s weights and batch-norm
    statistics, updated by ``train_one_epoch``; None when ``decay`` is 0.

    After n updates the decay is min(decay, (1 + n) / (10 + n)). A fixed
    decay from the start would keep the random initial weights and the
    initial batch-norm variances of 1 (against ~0.002 after training, behind
    the first convolution of the salt preset) in the average for thousands of
    steps: measured, the average of a fixed 0.999 still predicted no salt at
    all after 14 epochs, when the trained weights scored 0.61.
    """
    if not decay:
        return None
    return _running_average(model, lambda n: 1 - ((1 + n) / (10 + n)).clamp(max=decay))


def equal_average(model):
    """The mean of ``model``'s weights and batch-norm statistics over the
    times its ``update_parameters`` is called (stochastic weight averaging)."""
    return _running_average(model, lambda n: 1 / (n + 1))


def _running_average(model, weight_of_update):
    """An AveragedModel that moves each average towards the current value by
    ``weight_of_update(n)`` after n earlier updates (the first one copies)."""
    @torch.no_grad()
    def update(averaged, current, num_averaged):
        # kept on the device: reading the count back would stall a GPU every step
        weight = weight_of_update(num_averaged.to(torch.float32))
        for average, value in zip(averaged, current):
            if average.is_floating_point():
                average.lerp_(value, weight.to(average.dtype))
            else:  # batch norm's count of batches
                average.copy_(value)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=True)


def _images_to_device(images, device, channels_last):
    # non_blocking lets the copy of a pinned batch overlap the GPU's work
    images = images.to(device, non_blocking=True)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    return images


def _to_device(images, masks, device, channels_last):
    return _images_to_device(images, device, channels_last), masks.to(device, non_blocking=True)


def _forward(model, images, tta):
    """The model's logits; with ``tta`` averaged with those of the mirrored
    image, mirrored back so that both describe the same pixels."""
    logits = model(images)
    if tta:
        logits = (logits + model(images.flip(-1)).flip(-1)) / 2
    return logits


def passes_in_pieces(micro_batch, batch_size):
    """Whether a batch of ``batch_size`` images goes through the network in
    pieces of ``micro_batch`` (``train_one_epoch``)."""
    return 0 < micro_batch < batch_size


def _as_float(outputs):
    """Logits, or a tuple of them (``DeepSupervisionLoss``), in float32."""
    return outputs.float() if torch.is_tensor(outputs) else tuple(part.float() for part in outputs)


def _accumulate_gradients(model, images, masks, loss_fn, dtype, scaler, micro_batch):
    """Backpropagate the batch's loss, piece by piece; returns the detached loss."""
    size = micro_batch if passes_in_pieces(micro_batch, len(images)) else len(images)
    pieces = list(zip(images.split(size), masks.split(size)))
    total = torch.zeros((), device=images.device)
    # DistributedDataParallel averages the gradients over the processes at
    # every backward pass; once per batch, after its last piece, is enough
    no_sync = getattr(model, "no_sync", None)
    for index, (piece_images, piece_masks) in enumerate(pieces):
        last = index == len(pieces) - 1
        with contextlib.nullcontext() if last or no_sync is None else no_sync():
            with _autocast(images.device, dtype):
                wants_parts = getattr(loss_fn, "takes_parts", False)
                outputs = model(piece_images, parts=True) if wants_parts else model(piece_images)
            loss = loss_fn(_as_float(outputs), piece_masks) * (len(piece_images) / len(images))
            (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.detach()
    return total


def train_one_epoch(model, loader, loss_fn, optimizer, device, *, dtype=None,
                    channels_last=False, scaler=None, scheduler=None, average=None,
                    micro_batch=0, max_grad_norm=0, description="train", reduce_sum=None):
    """One pass over ``loader``; returns the mean loss per image.

    ``micro_batch`` (above 0) passes each batch through the network in pieces
    of that many images and adds up their gradients before the step: the
    activations of one piece are alive at a time instead of the whole batch's.
    The step is the whole batch's for losses that average over images or
    pixels (BCE, Lovasz) in networks without batch norm.

    ``max_grad_norm`` (above 0) scales down the gradients of any step whose
    norm, over all weights together, exceeds it.

    ``scheduler`` (optional) steps after every batch, and so does ``average``
    (from ``weight_average``), which follows the weights of the bare model.

    The loss of each batch is weighted by its size, so a short last batch
    counts for what it holds, and only detached values are summed so no
    autograd graph outlives its step. ``reduce_sum`` adds up a tensor over
    processes in distributed training, making the mean that of all images.
    """
    model.train()
    bare_model = getattr(model, "module", model)  # DistributedDataParallel's
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    count = 0
    for images, masks in tqdm(loader, desc=description, leave=False,
                              disable=description is None):
        images, masks = _to_device(images, masks, device, channels_last)
        optimizer.zero_grad(set_to_none=True)
        loss = _accumulate_gradients(model, images, masks, loss_fn, dtype, scaler, micro_batch)
        if max_grad_norm:
            if scaler is not None:
                scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
            torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if average is not None:
            average.update_parameters(bare_model)
        loss_sum += loss.double() * len(images)
        count += len(images)
    count_tensor = torch.tensor(float(count), dtype=torch.float64, device=device)
    totals = torch.stack([loss_sum, count_tensor])
    if reduce_sum is not None:
        totals = reduce_sum(totals)
    loss_total, count = totals.tolist()
    mean = loss_total / max(count, 1)
    if count and not math.isfinite(mean):
        raise TrainingDiverged(
            f"the training loss became {mean}; lower INIT_LR (--init-lr) or check "
            f"the data for broken images")
    return mean


@torch.inference_mode()
def evaluate(model, loader, loss_fn, device, threshold, *, dtype=None,
             channels_last=False, description="validate", num_classes=1):
    """Loss, IoU, Dice and competition score summed over ``loader``'s images,
    without test-time flips (it ranks epochs; ``collect_probabilities`` flips).
    With several classes: the loss and each class's pixel counts."""
    model.eval()
    totals = MetricTotals(device) if num_classes == 1 else ClassTotals(num_classes, device)
    for images, masks in tqdm(loader, desc=description, leave=False,
                              disable=description is None):
        images, masks = _to_device(images, masks, device, channels_last)
        with _autocast(device, dtype):
            logits = model(images)
        logits = logits.float()
        loss = loss_fn(logits, masks)
        if num_classes == 1:
            totals.add(loss, torch.sigmoid(logits) > threshold, masks > 0.5)
        else:
            totals.add(loss, logits.argmax(1), masks)
    return totals


@torch.inference_mode()
def predict_logits(model, images, device, *, dtype=None, channels_last=False, tta=False):
    """Float32 logits for a float batch (N,C,H,W) of images in [0, 1]."""
    model.eval()
    images = _images_to_device(images, device, channels_last)
    with _autocast(device, dtype):
        logits = _forward(model, images, tta)
    return logits.float()


@torch.inference_mode()
def collect_probabilities(model, loader, device, *, dtype=None, channels_last=False,
                          tta=False, description="validation predictions"):
    """(probabilities, masks, images) of a whole loader, on the CPU, for tuning."""
    probabilities, targets, inputs = [], [], []
    for images, masks in tqdm(loader, desc=description, leave=False,
                              disable=description is None):
        logits = predict_logits(model, images, device, dtype=dtype,
                                channels_last=channels_last, tta=tta)
        probabilities.append(torch.sigmoid(logits).cpu())
        # the dataset may live in a GPU's memory (DATA_ON_DEVICE)
        targets.append((masks > 0.5).cpu())
        inputs.append(images.cpu())
    return torch.cat(probabilities), torch.cat(targets), torch.cat(inputs)
