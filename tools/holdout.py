"""Set a fixed test part of a dataset apart, so that accuracy is measured on
images that neither the training, the choice of epoch nor the tuning saw.

    python -m tools.holdout --dataset-path ../shared/tgs-salt/train --out /tmp/holdout
    torchrun --standalone --nproc_per_node 2 train.py --preset salt \\
        --dataset-path /tmp/holdout/dev --base-output /tmp/run
    python predict.py --base-output /tmp/run --evaluate --test-paths /tmp/holdout/test_paths.txt

The development part is a folder of symbolic links (dev/images, dev/masks)
that train.py splits as usual; the test part is a test-paths file, as train.py
writes one, for ``predict.py --evaluate``. The same seed gives the same parts.
"""
import argparse
import os

from sklearn.model_selection import train_test_split

from pyimagesearch.dataset import DataError, pair_image_mask_paths
from pyimagesearch.split import write_test_paths


def make_holdout(dataset_path, out, test_size, seed):
    """Write ``out``/dev (links) and ``out``/test_paths.txt; the test pairs."""
    images, masks = pair_image_mask_paths(os.path.join(dataset_path, "images"),
                                          os.path.join(dataset_path, "masks"))
    dev_images, test_images, dev_masks, test_masks = train_test_split(
        [os.path.abspath(p) for p in images], [os.path.abspath(p) for p in masks],
        test_size=test_size, random_state=seed)
    for kind, paths in (("images", dev_images), ("masks", dev_masks)):
        folder = os.path.join(out, "dev", kind)
        os.makedirs(folder)
        for path in paths:
            os.symlink(path, os.path.join(folder, os.path.basename(path)))
    write_test_paths(os.path.join(out, "test_paths.txt"), test_images, test_masks)
    return list(zip(test_images, test_masks))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset-path", required=True,
                        help="a folder with images/ and masks/ (e.g. ../shared/tgs-salt/train)")
    parser.add_argument("--out", required=True, help="a new folder for dev/ and test_paths.txt")
    parser.add_argument("--test-size", type=int, default=500, help="images in the test part")
    parser.add_argument("--seed", type=int, default=2026, help="which images are set apart")
    args = parser.parse_args(argv)
    if os.path.exists(args.out):
        parser.error(f"{args.out} exists; give a new folder")
    try:
        test = make_holdout(args.dataset_path, args.out, args.test_size, args.seed)
    except DataError as error:
        parser.error(str(error))
    print(f"{len(test)} test pairs listed in {os.path.join(args.out, 'test_paths.txt')}; "
          f"train on {os.path.join(args.out, 'dev')}")


if __name__ == "__main__":
    main()
