"""Where a run's images come from, which of them validate, and the
test-paths file that records those for predict.py."""
import math
import os
import shutil

from sklearn.model_selection import train_test_split

from pyimagesearch import config, distributed, synthetic
from pyimagesearch.augment import training_transforms
from pyimagesearch.dataset import (DataError, MaskFormat, SegmentationDataset,
                                   list_image_files, pair_image_mask_paths)
from pyimagesearch.files import write_text

STOCK_IMAGE_FOLDER = os.path.join(config.PROJECT_ROOT, "dataset", "train", "images")


def dataset_folders(settings):
    """(image folder, mask folder); the built-in synthetic data stands in only
    for the project's own empty dataset/train, never for a folder the user chose."""
    image_folder, mask_folder = settings.IMAGE_DATASET_PATH, settings.MASK_DATASET_PATH
    stock = (os.path.abspath(image_folder) == STOCK_IMAGE_FOLDER
             and not settings.GIVEN & {"DATASET_PATH", "IMAGE_DATASET_PATH"})
    if stock and not (os.path.isdir(image_folder) and list_image_files(image_folder)):
        classes = settings.NUM_CLASSES
        if classes not in (1, 3):
            raise DataError(f"{image_folder} holds no images, and the built-in synthetic "
                            f"data has 1 or 3 classes, not {classes}; put your data there "
                            f"or give --dataset-path")
        folder = settings.SYNTHETIC_DATASET_PATH + ("" if classes == 1 else f"_{classes}_classes")
        print(f"[INFO] {image_folder} holds no images: training on built-in synthetic "
              f"salt data in {folder} (see README to use the real TGS data)")
        images, masks = os.path.join(folder, "images"), os.path.join(folder, "masks")
        existing = list_image_files(images) if os.path.isdir(images) else []
        if len(existing) != settings.SYNTHETIC_NUM_IMAGES:
            # the folder is the project's own output: regenerate it whole
            for kind in (images, masks):
                shutil.rmtree(kind, ignore_errors=True)
            synthetic.write_dataset(folder, settings.SYNTHETIC_NUM_IMAGES, seed=settings.SEED,
                                    progress=True, num_classes=classes)
        return images, masks
    return image_folder, mask_folder


def split_pairs(image_paths, mask_paths, test_split, seed):
    """(train images, test images, train masks, test masks), seeded."""
    # train_test_split holds out ceil(test_split * n) images
    if len(image_paths) - math.ceil(len(image_paths) * test_split) < 1:
        raise DataError(f"{len(image_paths)} image(s) with TEST_SPLIT {test_split} "
                        f"leave no image for training or for validation; add images or "
                        f"change --test-split")
    return train_test_split(image_paths, mask_paths, test_size=test_split, random_state=seed)


def write_test_paths(path, image_paths, mask_paths):
    write_text(path, "".join(f"{image}\t{mask}\n" for image, mask in zip(image_paths, mask_paths)))


def read_test_paths(path):
    """The (image, mask) pairs that ``write_test_paths`` recorded."""
    if not os.path.exists(path):
        raise DataError(f"no list of test images at {path}; run `python train.py` first "
                        f"(or give --test-paths)")
    with open(path, encoding="utf-8") as handle:
        pairs = [line.rstrip("\n").split("\t") for line in handle if line.strip()]
    if not pairs or any(len(pair) != 2 for pair in pairs):
        raise DataError(f"{path} is not a test-paths file written by train.py "
                        f"(one 'image<TAB>mask' line per test image)")
    return pairs


def read_split(settings, context):
    """Pair the images with their masks, hold out TEST_SPLIT for validation,
    read both parts into memory and record the held-out pairs in TEST_PATHS."""
    if context.is_main:
        image_folder, mask_folder = dataset_folders(settings)
    distributed.barrier(context)  # the main process may be generating data
    if not context.is_main:
        image_folder, mask_folder = dataset_folders(settings)
    imagePaths, maskPaths = pair_image_mask_paths(image_folder, mask_folder)
    trainImages, testImages, trainMasks, testMasks = split_pairs(
        imagePaths, maskPaths, settings.TEST_SPLIT, settings.SEED)

    print(f"[INFO] reading {len(imagePaths)} images from {image_folder}")
    reading = {"size": (settings.INPUT_IMAGE_HEIGHT, settings.INPUT_IMAGE_WIDTH),
               "num_channels": settings.NUM_CHANNELS,
               "mask_format": MaskFormat.from_settings(settings),
               "skip_bad_files": settings.SKIP_BAD_FILES, "progress": context.is_main}
    transforms = training_transforms(reading["size"], settings.AUGMENT, settings.NUM_CLASSES)
    trainDS = SegmentationDataset(trainImages, trainMasks, transforms, **reading)
    testDS = SegmentationDataset(testImages, testMasks, **reading)
    skipped = trainDS.skipped + testDS.skipped
    if skipped:
        print(f"[WARN] skipped {len(skipped)} unreadable image/mask pair(s) "
              f"(SKIP_BAD_FILES): {'; '.join(skipped[:3])}" + (" ..." if len(skipped) > 3 else ""))
    if not len(trainDS) or not len(testDS):
        raise DataError("after skipping unreadable files no image is left for "
                        + ("training" if not len(trainDS) else "validation"))
    print(f"[INFO] {len(trainDS)} images for training, {len(testDS)} for validation")
    if context.is_main:
        write_test_paths(settings.TEST_PATHS, testDS.imagePaths, testDS.maskPaths)
    return trainDS, testDS
