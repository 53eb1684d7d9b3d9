"""Finding, pairing, reading and caching image/mask pairs.

Every image is decoded once, when the dataset is built, and kept in memory as
uint8: decoding PNGs again every epoch would cost more than the network itself
on a small CPU. Images larger than the network's input are shrunk as they are
read; smaller ones are kept at their own size and enlarged batch by batch,
which keeps the dataset in memory at its smaller size.
"""
import concurrent.futures
import os
import typing

import cv2
import numpy as np
import torch
from imutils import paths
from torchvision import tv_tensors
from torchvision.transforms import v2
from tqdm import tqdm


# the allowed values of NUM_CHANNELS: images are read as gray or as RGB
CHANNEL_COUNTS = (1, 3)
# masks are kept as 8-bit class indices
MAX_CLASSES = 256


class MaskFormat(typing.NamedTuple):
    """How mask files encode classes. One class: any nonzero pixel is the
    foreground. Several: each pixel holds its class index (0 = background),
    or, with a ``palette`` (one RGB colour per class, class 0 first), its
    class's colour."""
    num_classes: int = 1
    palette: tuple = ()

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.NUM_CLASSES, parse_palette(settings.CLASS_COLORS))


def parse_palette(text):
    """``"0,0,0;255,0,0"`` as ((0, 0, 0), (255, 0, 0)); ValueError if malformed."""
    if not text.strip():
        return ()
    malformed = ValueError(f"{text!r} is not a list of distinct R,G,B colours")
    try:
        colours = tuple(tuple(int(value) for value in colour.split(","))
                        for colour in text.split(";"))
    except ValueError:
        raise malformed from None
    if any(len(colour) != 3 or not all(0 <= value <= 255 for value in colour)
           for colour in colours) or len(set(colours)) != len(colours):
        raise malformed
    return colours


class DataError(ValueError):
    """Bad input data; the message says which files and how to fix them."""


def few(names, limit=5):
    shown = ", ".join(sorted(names)[:limit])
    return shown + (f" (and {len(names) - limit} more)" if len(names) > limit else "")


# the file endings imutils' list_images takes for images, as messages name them
IMAGE_KINDS = ", ".join(paths.image_types)


def _hidden(path, folder):
    return any(part.startswith(".") for part in os.path.relpath(path, folder).split(os.sep))


def list_image_files(folder):
    """Image files under ``folder``, hidden files (such as macOS ``._x.png``) left out."""
    return sorted(path for path in paths.list_images(folder) if not _hidden(path, folder))


def list_other_files(folder):
    """The files under ``folder`` that list_image_files leaves out for not
    being images (``notes.txt``, ``a.webp``); hidden ones are not counted."""
    images = set(list_image_files(folder))
    return sorted(path for root, _, names in os.walk(folder)
                  for path in (os.path.join(root, name) for name in names)
                  if path not in images and not _hidden(path, folder))


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
        raise DataError(f"no images ({IMAGE_KINDS}) in {image_folder}")
    unpaired_images = images.keys() - masks.keys()
    unpaired_masks = masks.keys() - images.keys()
    if unpaired_images or unpaired_masks:
        problems = []
        if unpaired_images:
            problems.append(f"{len(unpaired_images)} image(s) in {image_folder} have "
                            f"no mask of the same name: {few(unpaired_images)}")
        if unpaired_masks:
            problems.append(f"{len(unpaired_masks)} mask(s) in {mask_folder} have "
                            f"no image of the same name: {few(unpaired_masks)}")
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


def read_mask(path, mask_format=MaskFormat()):
    """A mask as a uint8 HxW array of class indices: 0 (background) and 1
    (salt) for one class, 0 to num_classes - 1 for several.

    One class: any nonzero value is salt (TGS masks are 16-bit 0/65535 when
    they hold salt and 8-bit 0 when they are empty). A mask with several
    nonzero values is not a binary mask (a JPEG or a label map), and is
    refused rather than guessed. An alpha channel is ignored: it says how
    opaque a pixel is, not what it shows.
    """
    pixels = _read(path)
    if mask_format.num_classes > 1:
        return _class_indices(pixels, path, mask_format)
    if pixels.ndim == 3:
        pixels = pixels.max(axis=2)
    salt = pixels[pixels > 0]
    if salt.size and salt.min() != salt.max():
        raise DataError(f"{path} is not a binary mask: its nonzero pixels take "
                        f"several values ({salt.min()} to {salt.max()}); save masks as "
                        f"PNG with one value for salt and 0 elsewhere")
    return (pixels > 0).astype(np.uint8)


def _class_indices(pixels, path, mask_format):
    if mask_format.palette:
        if pixels.ndim != 3:
            raise DataError(f"{path} is a gray mask, but CLASS_COLORS names colours; "
                            f"save colour masks or give --class-colors ''")
        rgb = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB).astype(np.int64)
        codes = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
        known = np.array([(r << 16) | (g << 8) | b for r, g, b in mask_format.palette])
        order = np.argsort(known)
        found = order[np.searchsorted(known, codes, sorter=order).clip(max=len(known) - 1)]
        unknown = codes[known[found] != codes]
        if unknown.size:
            code = int(unknown[0])
            raise DataError(f"{path} has the colour {(code >> 16, (code >> 8) & 255, code & 255)}"
                            f", which is not among the CLASS_COLORS {mask_format.palette}")
        return found.astype(np.uint8)
    if pixels.ndim == 3:
        if not (np.array_equal(pixels[..., 0], pixels[..., 1])
                and np.array_equal(pixels[..., 0], pixels[..., 2])):
            raise DataError(f"{path} is a colour mask; give each class's colour with "
                            f"--class-colors, or save masks as class indices (0 to "
                            f"{mask_format.num_classes - 1})")
        pixels = pixels[..., 0]
    if pixels.max() >= mask_format.num_classes:
        raise DataError(f"{path} holds the class {int(pixels.max())}, but NUM_CLASSES is "
                        f"{mask_format.num_classes} (classes 0 to "
                        f"{mask_format.num_classes - 1}); raise --num-classes or fix the mask")
    return pixels.astype(np.uint8)


def resize_mask(mask, size, num_classes=1):
    """A uint8 mask of class indices resized as its image is: each class's
    pixels resampled bilinearly as floats, and each pixel given the class
    with the most weight (for one class: salt where it is over one half).

    Nearest-neighbour resizing, torchvision's choice for ``tv_tensors.Mask``,
    takes pixels on another grid than the image's bilinear resize and shifts
    the mask by up to half a source pixel against its image.

    Works on one mask (1,H,W) or a batch of them (N,1,H,W).
    """
    mask = mask.as_subclass(torch.Tensor)
    if num_classes == 1:
        resized = v2.functional.resize(mask.float(), list(size), antialias=True)
        return (resized > 0.5).to(torch.uint8)
    one_hot = torch.nn.functional.one_hot(mask.select(-3, 0).long(), num_classes).movedim(-1, -3)
    resized = v2.functional.resize(one_hot.float(), list(size), antialias=True)
    return resized.argmax(-3, keepdim=True).to(torch.uint8)


def resize_pair(image, mask, size, num_classes=1):
    """Resize jointly on one pixel grid; the mask keeps its class indices.
    Works on one pair or a batch of them."""
    image = v2.functional.resize(tv_tensors.Image(image), list(size), antialias=True)
    return image, tv_tensors.Mask(resize_mask(mask, size, num_classes))


def read_pair(image_path, mask_path, num_channels, mask_format=MaskFormat()):
    """One pair as uint8 tensors (C,H,W) and (1,H,W) at the files' own size."""
    image = read_image(image_path, num_channels)
    mask = read_mask(mask_path, mask_format)
    if image.shape[:2] != mask.shape:
        raise DataError(f"{image_path} is {image.shape[1]}x{image.shape[0]} but its "
                        f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]}; "
                        f"an image and its mask must have the same size")
    image = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
    return image, torch.from_numpy(mask)[None]


def _load_all(pairs, size, num_channels, mask_format, threads):
    """Yield each pair in order, or the DataError reading it raised: a pair
    smaller than ``size`` at its own size, any other resized to ``size``.
    Decoded by ``threads`` threads at once (0: one per CPU core), since
    OpenCV and PyTorch release Python's lock while they work."""
    def load(pair):
        try:
            image, mask = read_pair(*pair, num_channels, mask_format)
        except DataError as error:
            return error
        if image.shape[-2] * image.shape[-1] < size[0] * size[1]:
            return image, mask
        return resize_pair(image, mask, size, mask_format.num_classes)

    threads = threads or os.cpu_count() or 1
    if threads == 1:
        yield from map(load, pairs)
        return
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        yield from pool.map(load, pairs)


class SegmentationDataset(torch.utils.data.Dataset):
    """Image/mask pairs decoded once into memory.

    ``transforms`` (optional) is a torchvision.transforms.v2 transform applied
    jointly to the image and mask of each sample, e.g. random flips. With
    ``skip_bad_files`` a pair that cannot be read is left out and its error
    kept in ``skipped`` instead of raised. ``threads`` decode files at once
    (0: one per CPU core).
    Samples come out as an image (C,H,W) of floats in [0, 1] and a mask:
    (1,H,W) floats 0/1 for one class, (H,W) class indices (int64) for several.
    """

    def __init__(self, imagePaths, maskPaths, transforms=None, *,
                 size=(128, 128), num_channels=1, skip_bad_files=False, progress=False,
                 mask_format=MaskFormat(), threads=0):
        if len(imagePaths) != len(maskPaths):
            raise DataError(f"{len(imagePaths)} images but {len(maskPaths)} masks")
        self.transforms = transforms
        self.num_classes = mask_format.num_classes
        self.size = tuple(size)
        self.imagePaths, self.maskPaths, self.skipped = [], [], []
        pairs = list(zip(imagePaths, maskPaths))
        self.images = torch.empty((0, num_channels, *self.size), dtype=torch.uint8)
        self.masks = torch.empty((0, 1, *self.size), dtype=torch.uint8)
        loaded = _load_all(pairs, self.size, num_channels, mask_format, threads)
        for (image_path, mask_path), outcome in tqdm(zip(pairs, loaded), total=len(pairs),
                                                     desc="reading images",
                                                     disable=not progress, leave=False):
            if isinstance(outcome, DataError):
                if not skip_bad_files:
                    raise outcome
                self.skipped.append(str(outcome))
                continue
            self._store(len(self.imagePaths), *outcome, capacity=len(pairs))
            self.imagePaths.append(image_path)
            self.maskPaths.append(mask_path)
        self.images = self.images[:len(self.imagePaths)]
        self.masks = self.masks[:len(self.imagePaths)]

    def _store(self, slot, image, mask, capacity):
        """Put a pair into ``slot`` of the uint8 tensors, which are filled in
        place: a list of pairs stacked at the end would hold the dataset twice
        at once. They keep the size of the first pair; from the first pair of
        another size on, they keep the network's."""
        if not slot:
            self.images = torch.empty((capacity, *image.shape), dtype=torch.uint8)
            self.masks = torch.empty((capacity, *mask.shape), dtype=torch.uint8)
        if image.shape[-2:] != self.images.shape[-2:]:
            if self.images.shape[-2:] != self.size:
                self._enlarge_stored(slot, capacity)
            if image.shape[-2:] != self.size:
                image, mask = resize_pair(image, mask, self.size, self.num_classes)
        self.images[slot], self.masks[slot] = image, mask

    def _enlarge_stored(self, count, capacity, chunk=256):
        """The first ``count`` pairs, stored smaller, resized to the network's size."""
        images = torch.empty((capacity, self.images.shape[1], *self.size), dtype=torch.uint8)
        masks = torch.empty((capacity, 1, *self.size), dtype=torch.uint8)
        for start in range(0, count, chunk):
            part = slice(start, min(start + chunk, count))
            images[part], masks[part] = self._at_network_size(self.images[part], self.masks[part])
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.imagePaths)

    def to(self, device):
        """Keep the decoded pairs (uint8) in ``device``'s memory: batches are
        then cut, resized, augmented and converted there, with no copy per batch."""
        self.images, self.masks = self.images.to(device), self.masks.to(device)
        return self

    def __getitem__(self, idx):
        return self._sample(*self._at_network_size(self.images[idx], self.masks[idx]))

    def __getitems__(self, indices):
        """The samples of a whole batch, cut with one gather where the data
        lies (DataLoader asks for a batch's samples this way)."""
        index = torch.as_tensor(indices, dtype=torch.long, device=self.images.device)
        images, masks = self._at_network_size(self.images[index], self.masks[index])
        if self.transforms is None:
            images, masks = self._as_floats(images, masks)
            return list(zip(images, masks))
        return [self._sample(image, mask) for image, mask in zip(images, masks)]

    def _at_network_size(self, images, masks):
        """Stored pairs (one, or a batch) at the size the network takes."""
        if images.shape[-2:] == self.size:
            return images, masks
        images, masks = resize_pair(images, masks, self.size, self.num_classes)
        return images.as_subclass(torch.Tensor), masks.as_subclass(torch.Tensor)

    def _sample(self, image, mask):
        if self.transforms is not None:
            image, mask = self.transforms(tv_tensors.Image(image), tv_tensors.Mask(mask))
            image, mask = image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)
        return self._as_floats(image, mask)

    def _as_floats(self, image, mask):
        # works on one sample (C,H,W) or a batch of them (N,C,H,W)
        if self.num_classes > 1:
            return image.float() / 255, mask.select(-3, 0).long()
        return image.float() / 255, mask.float()
