"""Segmenting image files with a trained model, in batches."""
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from pyimagesearch.dataset import read_image
from pyimagesearch.engine import predict_logits


def segment_files(model, arguments, image_paths, device, threshold, *, batch_size=64,
                  dtype=None, channels_last=False):
    """Yield (path, image, mask) per file: the image as read (HxWxC uint8) and
    its predicted 0/1 mask at the image's own size.

    The logits, not the thresholded mask, are resized back to the image's
    size, so the mask's edges fall between pixels where the model put them.
    """
    num_channels = arguments["encChannels"][0]
    resize = v2.Resize(tuple(arguments["outSize"]), antialias=True)
    for start in range(0, len(image_paths), batch_size):
        chunk = image_paths[start:start + batch_size]
        images = [read_image(path, num_channels) for path in chunk]
        batch = torch.stack([resize(torch.from_numpy(image).permute(2, 0, 1))
                             for image in images]).float() / 255
        logits = predict_logits(model, batch, device, dtype=dtype, channels_last=channels_last)
        for path, image, image_logits in zip(chunk, images, logits):
            full_size = F.interpolate(image_logits[None], size=image.shape[:2],
                                      mode="bilinear", align_corners=False)[0, 0]
            mask = torch.sigmoid(full_size) > threshold
            yield path, image, mask.cpu().numpy().astype(np.uint8)
