"""A generated salt-like dataset for the quick start and the tests.

Each image is a seismic-looking section: wavy horizontal layers with noise.
About 60% of the images hold a salt body, a smooth blob rising from the
bottom or the side whose inside has none of the layering, only a faint
blotchy texture, which is how salt looks in real seismic data. The files
carry the quirks of the real TGS data: RGB images with three identical
channels, salt masks as 16-bit PNG (0/65535) and empty masks as 8-bit PNG.

With ``num_classes`` 3 half of the images also hold a second kind of body, a
bright lens of gas high in the section (class 2), and the masks are 8-bit
class indices: a small multi-class set.
"""
import os

import cv2
import numpy as np
from tqdm import tqdm

from pyimagesearch.files import atomic_path

EMPTY_SHARE = 0.4


def _smooth_noise(rng, size, blur):
    field = cv2.GaussianBlur(rng.standard_normal((size, size)).astype(np.float32),
                             (0, 0), blur)
    return field / (field.std() + 1e-6)


def _layers(rng, size):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    warp = (rng.uniform(2, 8) * np.sin(2 * np.pi * cols / rng.uniform(40, 160)
                                       + rng.uniform(0, 2 * np.pi))
            + 3 * _smooth_noise(rng, size, 12))
    depth = rows + warp + rng.uniform(-0.15, 0.15) * cols
    period = rng.uniform(5, 12)
    layers = np.sin(2 * np.pi * depth / period) + 0.5 * np.sin(2 * np.pi * depth / (period * 2.7))
    return layers * rng.uniform(35, 60)


def _salt_mask(rng, size):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32) / size
    side = rng.integers(3)
    ramp = (rows, cols, 1 - cols)[side]  # bodies rise from the bottom or a side
    field = 2.5 * ramp + _smooth_noise(rng, size, rng.uniform(8, 16))
    coverage = rng.uniform(0.08, 0.85)
    return (field > np.quantile(field, 1 - coverage)).astype(np.uint8)


def _gas_lens(rng, size):
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    centre_row, centre_col = rng.uniform(0.15, 0.45) * size, rng.uniform(0.2, 0.8) * size
    half_width, half_height = rng.uniform(0.1, 0.22) * size, rng.uniform(0.05, 0.1) * size
    return ((cols - centre_col) / half_width) ** 2 + ((rows - centre_row) / half_height) ** 2 < 1


def make_sample(rng, size=101, num_classes=1):
    """One (image, mask) pair: uint8 HxW gray image and mask of class indices
    (0/1 for one class)."""
    image = 128 + _layers(rng, size)
    has_salt = rng.random() >= EMPTY_SHARE
    mask = _salt_mask(rng, size) if has_salt else np.zeros((size, size), np.uint8)
    if mask.any():
        salt = 128 + rng.uniform(-25, 25) + 12 * _smooth_noise(rng, size, 3)
        image = np.where(mask > 0, salt, image)
        # the top of a salt body is a strong reflector in seismic sections
        edge = cv2.morphologyEx(mask, cv2.MORPH_GRADIENT, np.ones((3, 3), np.uint8))
        image = image + 40 * edge
    if num_classes > 2 and rng.random() < 0.5:
        lens = _gas_lens(rng, size) & (mask == 0)
        image = np.where(lens, 215 + 8 * _smooth_noise(rng, size, 2), image)
        mask = np.where(lens, 2, mask).astype(np.uint8)
    image = image + rng.normal(0, 6, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8), mask


def write_dataset(folder, count, seed=0, size=101, progress=False, num_classes=1):
    """Write ``count`` pairs to ``folder``/images and ``folder``/masks; returns the folder.
    ``num_classes`` 1 (salt) or 3 (salt and gas)."""
    if num_classes not in (1, 3):
        raise ValueError(f"the built-in data has 1 or 3 classes, not {num_classes}")
    rng = np.random.default_rng(seed)
    for kind in ("images", "masks"):
        os.makedirs(os.path.join(folder, kind), exist_ok=True)
    for index in tqdm(range(count), desc="generating data", disable=not progress, leave=False):
        image, mask = make_sample(rng, size, num_classes)
        name = f"synthetic_{index:05d}.png"
        mask_pixels = mask.astype(np.uint16) * 65535 if mask.any() and num_classes == 1 else mask
        for kind, pixels in (("images", cv2.merge([image] * 3)), ("masks", mask_pixels)):
            with atomic_path(os.path.join(folder, kind, name)) as temporary:
                if not cv2.imwrite(temporary, pixels):
                    raise OSError(f"could not write {temporary}")
    return folder
