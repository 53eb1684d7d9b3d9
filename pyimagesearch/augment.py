"""Random changes to training samples, applied jointly to image and mask.

torchvision.transforms.v2 moves a ``tv_tensors.Mask`` with every geometric
change of its image (nearest-neighbour, so it stays binary) and leaves it
alone in photometric ones, so the pair stays aligned by construction.
"""
from torchvision.transforms import v2


def training_transforms(size, augment):
    """The joint transform for training samples of ``size`` (height, width), or None."""
    if not augment:
        return None
    return v2.Compose([
        # seismic sections have no preferred left or right, but they do have
        # an up and a down (salt rises from below): no vertical flips
        v2.RandomHorizontalFlip(),
        # a zoom into 70-100% of the tile, shifted at random: new positions
        # and scales without the empty borders that a plain shift leaves
        v2.RandomApply([v2.RandomResizedCrop(size, scale=(0.7, 1.0), ratio=(0.85, 1.18),
                                             antialias=True)], p=0.5),
        v2.RandomApply([v2.ColorJitter(brightness=0.15, contrast=0.15)], p=0.5),
    ])
