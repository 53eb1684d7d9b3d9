import os

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from pyimagesearch import synthetic
from pyimagesearch.dataset import (DataError, MaskFormat, SegmentationDataset,
                                   pair_image_mask_paths, parse_palette, read_image, read_mask,
                                   read_pair, resize_mask, resize_pair)
from pyimagesearch.inference import logits_at_size
from pyimagesearch.metrics import iou_per_image


def write(path, pixels):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    assert cv2.imwrite(str(path), pixels)
    return str(path)


@pytest.fixture
def folders(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    return images, masks


def test_pairs_by_name_not_by_order(folders):
    images, masks = folders
    # sorted image names and sorted mask names would pair b.jpg with a.png
    for name in ("b.jpg", "c.png"):
        write(images / name, np.zeros((4, 4), np.uint8))
    for name in ("b.png", "c.png"):
        write(masks / name, np.zeros((4, 4), np.uint8))
    image_paths, mask_paths = pair_image_mask_paths(str(images), str(masks))
    assert [os.path.basename(p) for p in image_paths] == ["b.jpg", "c.png"]
    assert [os.path.basename(p) for p in mask_paths] == ["b.png", "c.png"]


def test_unpaired_files_are_named_in_the_error(folders):
    images, masks = folders
    write(images / "a.png", np.zeros((4, 4), np.uint8))
    write(images / "lonely.png", np.zeros((4, 4), np.uint8))
    write(masks / "a.png", np.zeros((4, 4), np.uint8))
    write(masks / "orphan.png", np.zeros((4, 4), np.uint8))
    with pytest.raises(DataError) as error:
        pair_image_mask_paths(str(images), str(masks))
    assert "1 image(s)" in str(error.value) and "lonely" in str(error.value)
    assert "1 mask(s)" in str(error.value) and "orphan" in str(error.value)


def test_hidden_and_non_image_files_are_ignored(folders):
    images, masks = folders
    write(images / "a.png", np.zeros((4, 4), np.uint8))
    write(masks / "a.png", np.zeros((4, 4), np.uint8))
    write(images / "._a.png", np.zeros((4, 4), np.uint8))
    (images / "notes.txt").write_text("not an image")
    (masks / "Thumbs.db").write_bytes(b"\0")
    image_paths, _ = pair_image_mask_paths(str(images), str(masks))
    assert [os.path.basename(p) for p in image_paths] == ["a.png"]


def test_missing_and_empty_folders_are_clear_errors(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        pair_image_mask_paths(str(tmp_path / "nope"), str(tmp_path / "nope2"))
    (tmp_path / "i").mkdir()
    (tmp_path / "m").mkdir()
    with pytest.raises(DataError, match="no images"):
        pair_image_mask_paths(str(tmp_path / "i"), str(tmp_path / "m"))


def test_masks_are_binarised_as_nonzero(tmp_path):
    salt16 = np.zeros((5, 5), np.uint16)
    salt16[1:3, 1:3] = 65535
    salt8 = (salt16 > 0).astype(np.uint8) * 255
    ones8 = (salt16 > 0).astype(np.uint8)  # some tools save salt as 1
    expected = (salt16 > 0).astype(np.uint8)
    for name, pixels in (("m16.png", salt16), ("m8.png", salt8), ("m1.png", ones8),
                         ("empty.png", np.zeros((5, 5), np.uint8))):
        mask = read_mask(write(tmp_path / name, pixels))
        assert mask.dtype == np.uint8
        assert np.array_equal(mask, np.zeros_like(expected) if name == "empty.png" else expected)


def test_a_mask_with_several_values_is_refused(tmp_path):
    pixels = np.zeros((5, 5), np.uint8)
    pixels[0, 0], pixels[1, 1] = 128, 255
    with pytest.raises(DataError, match="not a binary mask"):
        read_mask(write(tmp_path / "grey.png", pixels))


@pytest.mark.parametrize("kind", ["gray", "rgb", "rgba", "gray16", "jpeg"])
@pytest.mark.parametrize("num_channels", [1, 3])
def test_images_of_any_channel_count(tmp_path, kind, num_channels):
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    pixels = {"gray": gray, "rgb": cv2.merge([gray] * 3), "jpeg": cv2.merge([gray] * 3),
              "rgba": cv2.merge([gray] * 3 + [np.full_like(gray, 255)]),
              "gray16": gray.astype(np.uint16) * 257}[kind]
    extension = ".jpg" if kind == "jpeg" else ".png"
    image = read_image(write(tmp_path / f"{kind}{extension}", pixels), num_channels)
    assert image.shape == (3, 4, num_channels)
    assert image.dtype == np.uint8
    # JPEG is lossy: its pixels come back close, not equal
    tolerance = 12 if kind == "jpeg" else 0
    for channel in range(num_channels):
        assert np.abs(image[:, :, channel].astype(int) - gray).max() <= tolerance


def test_colour_images_are_read_as_rgb(tmp_path):
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # OpenCV stores blue first
    image = read_image(write(tmp_path / "blue.png", bgr), 3)
    assert image[0, 0].tolist() == [0, 0, 255]


def test_non_square_pairs_are_resized_to_the_input_size(tmp_path):
    image = write(tmp_path / "i.png", np.zeros((10, 30), np.uint8))
    mask = write(tmp_path / "m.png", np.ones((10, 30), np.uint8))
    resized_image, resized_mask = resize_pair(*read_pair(image, mask, 1), (16, 24))
    assert resized_image.shape == (1, 16, 24) and resized_mask.shape == (1, 16, 24)


def test_corrupt_image_names_the_file(tmp_path):
    path = write(tmp_path / "ok.png", np.zeros((8, 8), np.uint8))
    with open(path, "rb") as handle:
        start = handle.read(30)
    with open(path, "wb") as handle:
        handle.write(start)
    with pytest.raises(DataError, match="ok.png"):
        read_image(path, 1)


def test_mask_of_another_size_is_refused(tmp_path):
    image = write(tmp_path / "i.png", np.zeros((10, 10), np.uint8))
    mask = write(tmp_path / "m.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(DataError, match="same size"):
        read_pair(image, mask, 1)


def test_resize_keeps_masks_binary_and_images_smooth(tmp_path):
    image = write(tmp_path / "i.png", np.tile(np.arange(0, 250, 25, dtype=np.uint8), (10, 1)))
    mask_pixels = np.zeros((10, 10), np.uint16)
    mask_pixels[:, 5:] = 65535
    mask = write(tmp_path / "m.png", mask_pixels)
    resized_image, resized_mask = resize_pair(*read_pair(image, mask, 1), (16, 16))
    assert resized_image.shape == (1, 16, 16) and resized_mask.shape == (1, 16, 16)
    assert set(resized_mask.unique().tolist()) == {0, 1}
    # bilinear resizing of the ramp gives values that were not in the input
    assert len(resized_image.unique()) > 10


def test_dataset_gives_float_samples(synthetic_folder):
    images, masks = pair_image_mask_paths(os.path.join(synthetic_folder, "images"),
                                          os.path.join(synthetic_folder, "masks"))
    dataset = SegmentationDataset(images[:5], masks[:5], size=(64, 48), num_channels=1)
    image, mask = dataset[0]
    assert len(dataset) == 5
    assert image.shape == (1, 64, 48) and mask.shape == (1, 64, 48)
    assert image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_synthetic_data_has_the_tgs_quirks(synthetic_folder):
    masks = sorted(os.listdir(os.path.join(synthetic_folder, "masks")))
    pixels = [cv2.imread(os.path.join(synthetic_folder, "masks", m), cv2.IMREAD_UNCHANGED)
              for m in masks]
    empty = [p for p in pixels if not p.any()]
    salt = [p for p in pixels if p.any()]
    assert 0.25 < len(empty) / len(pixels) < 0.55
    assert all(p.dtype == np.uint8 for p in empty)
    assert all(p.dtype == np.uint16 and p.max() == 65535 for p in salt)
    image = cv2.imread(os.path.join(synthetic_folder, "images", masks[0]), cv2.IMREAD_UNCHANGED)
    assert image.shape == (101, 101, 3)
    assert np.array_equal(image[:, :, 0], image[:, :, 2])


def test_masks_keep_their_place_through_the_network_size_and_back(tmp_path):
    """Images that show their own masks, read at 128x128 as training reads
    them, must still match their masks there; and a network that returned
    those masks exactly must give the 101x101 masks back after prediction
    resizes its output to the image's size."""
    rng = np.random.default_rng(3)
    image_paths, mask_paths, originals = [], [], []
    while len(originals) < 40:
        _, mask = synthetic.make_sample(rng)
        if mask.any():
            name = f"{len(originals)}.png"
            image_paths.append(write(tmp_path / "images" / name, mask * 255))
            mask_paths.append(write(tmp_path / "masks" / name, mask))
            originals.append(torch.from_numpy(mask)[None].bool())
    dataset = SegmentationDataset(image_paths, mask_paths, size=(128, 128))
    originals = torch.stack(originals)
    images, masks = map(torch.stack, zip(*dataset.__getitems__(range(len(dataset)))))
    in_network = masks.bool()
    assert in_network.shape[-2:] == (128, 128)
    assert iou_per_image(images > 0.5, in_network).min() >= 0.99
    back = logits_at_size(masks * 2 - 1, (101, 101)) > 0
    assert iou_per_image(back, originals).min() >= 0.99


def test_an_alpha_channel_is_not_salt(tmp_path):
    salt = np.zeros((12, 12), np.uint8)
    salt[4:7, 4:7] = 255
    opaque = np.full_like(salt, 255)
    rgba = write(tmp_path / "rgba.png", cv2.merge([salt, salt, salt, opaque]))
    gray_alpha = str(tmp_path / "gray_alpha.png")
    Image.fromarray(np.dstack([salt, opaque]), mode="LA").save(gray_alpha)
    for path in (rgba, gray_alpha):
        mask = read_mask(path)
        assert mask.sum() == 9 and mask[4:7, 4:7].all(), path


def test_the_exif_orientation_is_applied_to_images_and_masks(tmp_path):
    # a 6-wide, 4-high picture whose EXIF says "turn 90 degrees clockwise":
    # viewers show it 4 wide and 6 high, its top row as the right column
    pixels = np.zeros((4, 6), np.uint8)
    pixels[0] = 255
    orientation = Image.Exif()
    orientation[0x0112] = 6
    for name in ("image.jpg", "mask.png"):
        Image.fromarray(pixels).save(tmp_path / name, exif=orientation.tobytes())
    image = read_image(str(tmp_path / "image.jpg"), 1)[:, :, 0]
    mask = read_mask(str(tmp_path / "mask.png"))
    assert image.shape == mask.shape == (6, 4)
    assert (image[:, 3] > 200).all() and (image[:, :2] < 50).all()
    assert mask[:, 3].all() and not mask[:, :3].any()


def test_class_index_masks_of_8_and_16_bits(tmp_path):
    labels = np.array([[0, 1, 2], [2, 2, 0]], np.uint8)
    three = MaskFormat(num_classes=3)
    for name, pixels in (("m8.png", labels), ("m16.png", labels.astype(np.uint16))):
        mask = read_mask(write(tmp_path / name, pixels), three)
        assert mask.dtype == np.uint8 and np.array_equal(mask, labels)


def test_a_class_outside_num_classes_names_the_file_and_value(tmp_path):
    path = write(tmp_path / "m.png", np.array([[0, 1], [3, 0]], np.uint8))
    with pytest.raises(DataError, match=r"m\.png holds the class 3, but NUM_CLASSES is 3"):
        read_mask(path, MaskFormat(num_classes=3))


def test_colour_masks_are_read_with_the_palette(tmp_path):
    palette = ((0, 0, 0), (255, 0, 0), (0, 0, 255))
    rgb = np.zeros((2, 3, 3), np.uint8)
    rgb[0, 1] = (255, 0, 0)
    rgb[1, 2] = (0, 0, 255)
    path = write(tmp_path / "colour.png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    mask = read_mask(path, MaskFormat(3, palette))
    assert mask.tolist() == [[0, 1, 0], [0, 0, 2]]
    with pytest.raises(DataError, match=r"colour \(255, 0, 0\), which is not among"):
        read_mask(path, MaskFormat(3, ((0, 0, 0), (0, 255, 0), (0, 0, 255))))
    with pytest.raises(DataError, match="--class-colors"):
        read_mask(path, MaskFormat(3))


def test_a_palette_is_parsed_or_refused():
    assert parse_palette("0,0,0; 255,0,0") == ((0, 0, 0), (255, 0, 0))
    assert parse_palette("") == ()
    for bad in ("0,0", "0,0,0;0,0,0", "0,0,300", "red"):
        with pytest.raises(ValueError):
            parse_palette(bad)


def test_class_masks_keep_their_classes_through_resizing():
    labels = torch.zeros((1, 20, 20), dtype=torch.uint8)
    labels[:, 2:9, 3:12] = 1
    labels[:, 12:18, 6:16] = 2
    up = resize_mask(labels, (40, 40), num_classes=3)
    assert set(up.unique().tolist()) == {0, 1, 2}
    assert torch.equal(resize_mask(up, (20, 20), num_classes=3), labels)


def test_a_multiclass_dataset_gives_class_indices(tmp_path):
    folder = synthetic.write_dataset(str(tmp_path / "three"), 6, seed=2, num_classes=3)
    images, masks = pair_image_mask_paths(os.path.join(folder, "images"),
                                          os.path.join(folder, "masks"))
    dataset = SegmentationDataset(images, masks, size=(32, 32), mask_format=MaskFormat(3))
    _, mask = dataset[0]
    assert mask.shape == (32, 32) and mask.dtype == torch.int64
    assert set(dataset.masks.unique().tolist()) == {0, 1, 2}


def test_reading_in_threads_gives_what_one_thread_reads(synthetic_folder, tmp_path):
    images, masks = pair_image_mask_paths(os.path.join(synthetic_folder, "images"),
                                          os.path.join(synthetic_folder, "masks"))
    serial = SegmentationDataset(images[:40], masks[:40], size=(64, 64), threads=1)
    parallel = SegmentationDataset(images[:40], masks[:40], size=(64, 64), threads=4)
    assert torch.equal(serial.images, parallel.images)
    assert torch.equal(serial.masks, parallel.masks)
    assert serial.imagePaths == parallel.imagePaths


@pytest.mark.parametrize("augment", [False, True])
def test_a_batch_cut_in_one_gather_holds_the_samples_one_by_one(synthetic_folder, augment):
    from pyimagesearch.augment import training_transforms
    images, masks = pair_image_mask_paths(os.path.join(synthetic_folder, "images"),
                                          os.path.join(synthetic_folder, "masks"))
    dataset = SegmentationDataset(images[:24], masks[:24], size=(48, 48),
                                  transforms=training_transforms((48, 48), augment))
    order = [5, 0, 17, 3, 11]
    torch.manual_seed(3)
    one_by_one = [dataset[i] for i in order]
    torch.manual_seed(3)
    batch = dataset.__getitems__(order)
    for (image, mask), (batch_image, batch_mask) in zip(one_by_one, batch, strict=True):
        assert torch.equal(image, batch_image) and torch.equal(mask, batch_mask)
    # DataLoader cuts its batches this way (its own generator leaves the
    # global random stream to the augmentation)
    torch.manual_seed(3)
    batch_images, batch_masks = next(iter(torch.utils.data.DataLoader(
        dataset, batch_size=5, sampler=order, generator=torch.Generator())))
    assert batch_images.dtype == torch.float32 and batch_masks.shape == (5, 1, 48, 48)
    assert torch.equal(batch_images, torch.stack([image for image, _ in one_by_one]))
    assert torch.equal(batch_masks, torch.stack([mask for _, mask in one_by_one]))


def test_data_kept_on_a_device_is_batched_there(synthetic_folder):
    # the "meta" device stands in for a GPU: a batch stays where the data is,
    # and pairs kept smaller than the network are enlarged there
    images, masks = pair_image_mask_paths(os.path.join(synthetic_folder, "images"),
                                          os.path.join(synthetic_folder, "masks"))
    dataset = SegmentationDataset(images[:8], masks[:8], size=(128, 128)).to("meta")
    assert dataset.images.shape[-2:] == (101, 101)
    batch_images, batch_masks = next(iter(torch.utils.data.DataLoader(dataset, batch_size=4)))
    assert batch_images.device.type == "meta" and batch_masks.device.type == "meta"
    assert batch_images.shape == (4, 1, 128, 128) and batch_images.dtype == torch.float32
    assert batch_masks.shape == (4, 1, 128, 128)


def _pairs_of_sizes(folder, sizes, num_classes, seed=0):
    rng = np.random.default_rng(seed)
    image_paths, mask_paths = [], []
    for index, (height, width) in enumerate(sizes):
        image_paths.append(write(folder / "images" / f"{index}.png",
                                 rng.integers(0, 256, (height, width), dtype=np.uint8)))
        mask_paths.append(write(folder / "masks" / f"{index}.png",
                                rng.integers(0, max(num_classes, 2), (height, width),
                                             dtype=np.uint8)))
    return image_paths, mask_paths


def _expected_sample(image_path, mask_path, size, num_classes):
    image, mask = resize_pair(*read_pair(image_path, mask_path, 1, MaskFormat(num_classes)),
                              size, num_classes)
    image = image.as_subclass(torch.Tensor).float() / 255
    mask = mask.as_subclass(torch.Tensor)
    return image, (mask.float() if num_classes == 1 else mask[0].long())


@pytest.mark.parametrize("num_classes", [1, 3])
@pytest.mark.parametrize("sizes, stored", [
    # smaller than the network: kept small in memory, enlarged batch by batch
    ([(30, 20)] * 4, (30, 20)),
    # a larger pair, then another small size: from then on all at the network's size
    ([(30, 20), (30, 20), (64, 64), (30, 20), (24, 24)], (48, 40)),
])
def test_samples_are_the_pairs_resized_as_read_whatever_size_they_are_kept_at(
        tmp_path, num_classes, sizes, stored):
    image_paths, mask_paths = _pairs_of_sizes(tmp_path, sizes, num_classes)
    dataset = SegmentationDataset(image_paths, mask_paths, size=(48, 40),
                                  mask_format=MaskFormat(num_classes), threads=1)
    assert dataset.images.shape[-2:] == stored and dataset.masks.shape[-2:] == stored
    batch = dataset.__getitems__(range(len(sizes)))
    for index, paths in enumerate(zip(image_paths, mask_paths)):
        expected_image, expected_mask = _expected_sample(*paths, (48, 40), num_classes)
        for image, mask in (dataset[index], batch[index]):
            assert torch.equal(image, expected_image)
            assert torch.equal(mask, expected_mask)


def test_masks_resized_as_a_batch_equal_masks_resized_one_by_one():
    labels = torch.randint(0, 3, (5, 1, 13, 17), dtype=torch.uint8)
    batch = resize_mask(labels, (20, 24), num_classes=3)
    assert batch.shape == (5, 1, 20, 24)
    for one, resized in zip(labels, batch):
        assert torch.equal(resize_mask(one, (20, 24), num_classes=3), resized)
