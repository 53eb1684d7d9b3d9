"""Segmenting image files with a trained model, in batches, and scoring
the masks against the true ones."""
import typing

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2
from tqdm import tqdm

from pyimagesearch.dataset import MaskFormat, read_image, read_mask
from pyimagesearch.engine import predict_logits
from pyimagesearch.metrics import METRICS, ClassTotals
from pyimagesearch.postprocess import is_blank, to_masks


class Segmented(typing.NamedTuple):
    """One file's prediction, all at the image's own size."""
    path: str
    image: np.ndarray  # as read, HxWxC uint8
    mask: np.ndarray  # class indices (0/1 for salt) uint8, made by the prediction rules
    probability: np.ndarray  # of each pixel's class (of salt for one class), float32


def logits_at_size(logits, size):
    """Logits (N,C,h,w) resampled bilinearly to ``size`` (height, width), on
    the same half-pixel grid as the images' resize into the network."""
    return F.interpolate(logits, size=tuple(size), mode="bilinear", align_corners=False)


def read_batch(image_paths, arguments):
    """(images as read, HxWxC uint8; the float batch the network takes: each
    image resized to its input size, in [0, 1])."""
    images = [read_image(path, arguments["encChannels"][0]) for path in image_paths]
    resize = v2.Resize(tuple(arguments["outSize"]), antialias=True)
    batch = torch.stack([resize(torch.from_numpy(image).permute(2, 0, 1)) for image in images])
    return images, batch.float() / 255


def segment_files(model, arguments, image_paths, device, rules, *, batch_size=64,
                  dtype=None, channels_last=False):
    """Yield a ``Segmented`` per file, its mask made by ``rules`` (a
    ``PredictionRules``).

    The logits, not the thresholded mask, are resized back to the image's
    size, so the mask's edges fall between pixels where the model put them.
    """
    in_height, in_width = arguments["outSize"]
    for start in range(0, len(image_paths), batch_size):
        chunk = image_paths[start:start + batch_size]
        images, batch = read_batch(chunk, arguments)
        logits = predict_logits(model, batch, device, dtype=dtype, channels_last=channels_last,
                                tta=rules.tta)
        blank = is_blank(batch)
        for path, image, image_logits, image_blank in zip(chunk, images, logits, blank):
            height, width = image.shape[:2]
            full_size = logits_at_size(image_logits[None], (height, width))
            # the minimum area was chosen at the network's size
            min_area = rules.min_area * height * width / (in_height * in_width)
            mask, probability = _decide(full_size, rules, min_area, image_blank)
            yield Segmented(path, image, mask.cpu().numpy().astype(np.uint8),
                            probability.cpu().numpy())


def _decide(logits, rules, min_area, blank):
    """(mask, probability of its class per pixel) from one image's logits
    (1,K,H,W): by the rules for one class, the likeliest class for several."""
    if logits.shape[1] == 1:
        probability = torch.sigmoid(logits)
        mask = to_masks(probability, rules.threshold, min_area, blank[None])
        return mask[0, 0], probability[0, 0]
    probability, mask = logits.softmax(1)[0].max(0)
    return mask * ~blank, probability


def _truth_and_prediction(model, arguments, pairs, device, rules, mask_format, options):
    """Yield each (image, mask) pair's true and predicted masks, (1,H,W) at
    the image's own size."""
    predictions = segment_files(model, arguments, [image for image, _ in pairs], device,
                                rules, **options)
    for (_, mask_path), segmented in tqdm(zip(pairs, predictions), total=len(pairs),
                                          desc="evaluating", unit="image"):
        yield (torch.from_numpy(read_mask(mask_path, mask_format))[None],
               torch.from_numpy(segmented.mask)[None])


def evaluate_classes(model, arguments, pairs, device, rules, mask_format, **options):
    """Each class's pixel counts over all the pairs, at the images' own sizes,
    as a ``ClassTotals`` (without a loss)."""
    totals = ClassTotals(mask_format.num_classes)
    for truth, predicted in _truth_and_prediction(model, arguments, pairs, device, rules,
                                                  mask_format, options):
        totals.add(torch.zeros(()), predicted, truth)
    return totals


def evaluate_pairs(model, arguments, pairs, device, rules, **options):
    """Each (image, mask) pair's metrics at the image's own size, as columns:
    one list per metric of ``METRICS``, and the true and predicted salt areas
    and the image's area in pixels."""
    columns = {**{name: [] for name in METRICS}, "salt_pixels": [], "predicted_pixels": [],
               "image_pixels": []}
    for truth, predicted in _truth_and_prediction(model, arguments, pairs, device, rules,
                                                  MaskFormat(), options):
        for name, metric in METRICS.items():
            columns[name].append(metric(predicted, truth).item())
        columns["salt_pixels"].append(int(truth.count_nonzero()))
        columns["predicted_pixels"].append(int(predicted.count_nonzero()))
        columns["image_pixels"].append(truth.numel())
    return columns
