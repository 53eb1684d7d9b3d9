"""Finding, pairing, reading and caching image/mask pairs.

Every image is decoded and resized once, when the dataset is built, and kept in
memory as uint8: decoding PNGs again every epoch would cost more than the
network itself on a small CPU.
"""
import os

import cv2
import numpy as np
import torch
from imutils import paths
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm


# the allowed values of NUM_CHANNELS: images are read as gray or as RGB
CHANNEL_COUNTS = (1, 3)


class DataError(ValueError):
    """Bad input data; the message says which files and how to fix them."""


def _few(names, limit=5):
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


def list_image_files(folder):
    """Image files under ``folder``, hidden files (such as macOS ``._x.png``) left out."""
    return sorted(path for path in paths.list_images(folder)
                  if not any(part.startswith(".")
                             for part in os.path.relpath(path, folder).split(os.sep)))


def by_stem(files, folder):
    """{name without extension (relative to ``folder``): path}; two files that
    would share a name (``a.png`` and ``a.jpg``) are refused, since every
    output and every pairing is by that name."""
    stems = {}
    for path in files:
        stem = os.path.splitext(os.path.relpath(path, folder))[0]
        if stem in stems:
            raise DataError(f"two files in {folder} share the name {stem!r}: "
                            f"{os.path.basename(stems[stem])} and "
                            f"{os.path.basename(path)}; keep one of them")
        stems[stem] = path
    return stems


def pair_image_mask_paths(image_folder, mask_folder):
    """(image paths, mask paths), matched by file name without extension."""
    for kind, folder in (("image", image_folder), ("mask", mask_folder)):
        if not os.path.isdir(folder):
            raise DataError(f"the {kind} folder {folder} does not exist; put the "
                            f"{kind}s there or point to them with the dataset flags")
    images = by_stem(list_image_files(image_folder), image_folder)
    masks = by_stem(list_image_files(mask_folder), mask_folder)
    if not images:
        raise DataError(f"no images (.png, .jpg, .bmp, .tif) in {image_folder}")
    unpaired_images = images.keys() - masks.keys()
    unpaired_masks = masks.keys() - images.keys()
    if unpaired_images or unpaired_masks:
        problems = []
        if unpaired_images:
            problems.append(f"{len(unpaired_images)} image(s) in {image_folder} have "
                            f"no mask of the same name: {_few(unpaired_images)}")
        if unpaired_masks:
            problems.append(f"{len(unpaired_masks)} mask(s) in {mask_folder} have "
                            f"no image of the same name: {_few(unpaired_masks)}")
        raise DataError("; ".join(problems))
    stems = sorted(images)
    return [images[s] for s in stems], [masks[s] for s in stems]


def _read(path):
    # np.fromfile + imdecode also reads paths that cv2.imread cannot (non-ASCII
    # names on Windows) and lets us tell "unreadable" from "missing"
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"cannot read {path}: {error.strerror}") from None
    # ANYDEPTH keeps 16-bit values; ANYCOLOR keeps gray as gray. Unlike
    # IMREAD_UNCHANGED these flags drop an alpha channel and turn the image as
    # its EXIF orientation says, as image viewers show it
    pixels = cv2.imdecode(data, cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR) if data.size else None
    if pixels is None:
        raise DataError(f"{path} is not a readable image (empty, truncated or "
                        f"not an image format OpenCV knows); replace or remove it, or "
                        f"skip such files with --skip-bad-files true")
    return pixels


def read_image(path, num_channels):
    """An image as uint8 HxWxC with C = ``num_channels`` (1 gray, 3 RGB)."""
    pixels = _read(path)
    if pixels.dtype == np.uint16:
        pixels = (pixels // 257).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        raise DataError(f"{path} has {pixels.dtype} pixels; expected 8- or 16-bit")
    if pixels.ndim == 2:
        gray, color = pixels, cv2.cvtColor(pixels, cv2.COLOR_GRAY2RGB)
    else:
        gray = cv2.cvtColor(pixels, cv2.COLOR_BGR2GRAY)
        color = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    return gray[:, :, None] if num_channels == 1 else color


def read_mask(path):
    """A mask as a uint8 HxW array of 0 (background) and 1 (salt).

    Any nonzero value is salt: TGS masks are 16-bit 0/65535 when they hold salt
    and 8-bit 0 when they are empty. A mask with several nonzero values is not
    a binary mask (a JPEG or a label map), and is refused rather than guessed.
    """
    pixels = _read(path)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    salt = pixels[pixels > 0]
    if salt.size and salt.min() != salt.max():
        raise DataError(f"{path} is not a binary mask: its nonzero pixels take "
                        f"several values ({salt.min()} to {salt.max()}); save masks as "
                        f"PNG with one value for salt and 0 elsewhere")
    return (pixels > 0).astype(np.uint8)


def resize_mask(mask, size):
    """A 0/1 mask (uint8) resized as its image is: resampled bilinearly as
    floats and thresholded at one half.

    Nearest-neighbour resizing, torchvision's choice for ``tv_tensors.Mask``,
    takes pixels on another grid than the image's bilinear resize and shifts
    the mask by up to half a source pixel against its image.
    """
    resized = v2.functional.resize(mask.as_subclass(torch.Tensor).float(), list(size),
                                   antialias=True)
    return (resized > 0.5).to(torch.uint8)


def resize_pair(image, mask, size):
    """Resize jointly on one pixel grid; the mask stays binary."""
    image = v2.functional.resize(tv_tensors.Image(image), list(size), antialias=True)
    return image, tv_tensors.Mask(resize_mask(mask, size))


def load_pair(image_path, mask_path, size, num_channels):
    """One pair as uint8 tensors (C,H,W) and (1,H,W) at ``size`` = (height, width)."""
    image = read_image(image_path, num_channels)
    mask = read_mask(mask_path)
    if image.shape[:2] != mask.shape:
        raise DataError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its "
                        f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; "
                        f"an image and its mask must have the same size")
    image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    mask = torch.from_numpy(mask)[None]
    return resize_pair(image, mask, size)


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs decoded once into memory.

    ``transforms`` (optional) is a torchvision.transforms.v2 transform applied
    jointly to the image and mask of each sample, e.g. random flips. With
    ``skip_bad_files`` a pair that cannot be read is left out and its error
    kept in ``skipped`` instead of raised.
    Samples come out as float tensors: image in [0, 1], mask 0/1.
    """

    def __init__(self, imagePaths, maskPaths, transforms=None, *,
                 size=(128, 128), num_channels=1, skip_bad_files=False, progress=False):
        if len(imagePaths) != len(maskPaths):
            raise DataError(f"{len(imagePaths)} images but {len(maskPaths)} masks")
        self.transforms = transforms
        self.imagePaths, self.maskPaths, self.skipped = [], [], []
        images, masks = [], []
        for image_path, mask_path in tqdm(zip(imagePaths, maskPaths), total=len(imagePaths),
                                          desc="reading images", disable=not progress,
                                          leave=False):
            try:
                image, mask = load_pair(image_path, mask_path, size, num_channels)
            except DataError as error:
                if not skip_bad_files:
                    raise
                self.skipped.append(str(error))
                continue
            self.imagePaths.append(image_path)
            self.maskPaths.append(mask_path)
            images.append(image)
            masks.append(mask)
        self.images = (torch.stack(images) if images
                       else torch.empty((0, num_channels, *size), dtype=torch.uint8))
        self.masks = (torch.stack(masks) if masks
                      else torch.empty((0, 1, *size), dtype=torch.uint8))

    def __len__(self):
        return len(self.imagePaths)

    def __getitem__(self, idx):
        image, mask = tv_tensors.Image(self.images[idx]), tv_tensors.Mask(self.masks[idx])
        if self.transforms is not None:
            image, mask = self.transforms(image, mask)
        return image.as_subclass(torch.Tensor).float() / 255, mask.as_subclass(torch.Tensor).float()
