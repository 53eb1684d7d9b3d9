"""Random changes to training samples, applied jointly to image and mask.

torchvision.transforms.v2 moves a ``tv_tensors.Mask`` with every geometric
change of its image and leaves it alone in photometric ones, so the pair
stays aligned by construction. The one exception is resampling: v2 resizes
masks by plain nearest neighbour, off its image's grid, so the zoom is our own.
"""
import numpy as np
import torch
from torchvision import transforms as v1
from torchvision import tv_tensors
from torchvision.transforms import v2

from pyimagesearch.dataset import resize_mask


def augmentation_seed(seed, rank, epoch):
    """The seed of the random changes that process ``rank`` makes in ``epoch``.

    Each process of a torchrun job gets a stream of its own (the same seed
    everywhere would make N processes draw N copies of one stream), and each
    epoch starts from its own seed, so a resumed run draws what an
    uninterrupted one would have drawn.
    """
    return int(np.random.SeedSequence([seed, rank, epoch]).generate_state(1)[0])


class RandomZoom:
    """With probability ``p``, crop a random part of the pair (a share
    ``scale`` of the area, of aspect ratio within ``ratio``) and resize it
    back to ``size``, the mask as ``dataset.resize_mask`` does."""

    def __init__(self, size, p=0.5, scale=(0.7, 1.0), ratio=(0.85, 1.18), num_classes=1):
        self.size, self.p, self.scale, self.ratio = list(size), p, scale, ratio
        self.num_classes = num_classes

    def __call__(self, image, mask):
        if torch.rand(1).item() >= self.p:
            return image, mask
        top, left, height, width = v1.RandomResizedCrop.get_params(image, self.scale, self.ratio)
        image = v2.functional.resized_crop(image, top, left, height, width, self.size,
                                           antialias=True)
        mask = v2.functional.crop(mask.as_subclass(torch.Tensor), top, left, height, width)
        return image, tv_tensors.Mask(resize_mask(mask, self.size, self.num_classes))


def training_transforms(size, augment, num_classes=1):
    """The joint transform for training samples of ``size`` (height, width), or None."""
    if not augment:
        return None
    return v2.Compose([
        # seismic sections have no preferred left or right, but they do have
        # an up and a down (salt rises from below): no vertical flips
        v2.RandomHorizontalFlip(),
        # a zoom into 70-100% of the tile, shifted at random: new positions
        # and scales without the empty borders that a plain shift leaves
        RandomZoom(size, num_classes=num_classes),
        v2.RandomApply([v2.ColorJitter(brightness=0.15, contrast=0.15)], p=0.5),
    ])
