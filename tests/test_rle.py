"""The competition's run-length code: hand-worked cases and round trips."""
import csv
import os

import numpy as np
import pytest

from pyimagesearch.rle import decode, encode

SHARED_CSV = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "tgs-salt", "train.csv")


def test_column_major_and_one_based_by_hand():
    mask = np.array([[0, 1, 0],
                     [1, 1, 0],
                     [1, 0, 1]])
    # column-major order: 0 1 1 | 1 1 0 | 0 0 1 -> runs start at pixels 2 (4 long) and 9
    assert encode(mask) == "2 4 9 1"
    assert np.array_equal(decode("2 4 9 1", (3, 3)), mask)


def test_empty_and_full_masks():
    assert encode(np.zeros((4, 5))) == ""
    assert encode(np.ones((4, 5))) == "1 20"
    assert decode("", (4, 5)).sum() == 0


def test_round_trip_of_generated_masks():
    rng = np.random.default_rng(0)
    for _ in range(50):
        shape = tuple(rng.integers(1, 40, size=2))
        mask = (rng.random(shape) < rng.random()).astype(np.uint8)
        assert np.array_equal(decode(encode(mask), shape), mask)


@pytest.mark.parametrize("code", ["1", "0 3", "5 0", "8 3"])
def test_malformed_codes_are_refused(code):
    with pytest.raises(ValueError):
        decode(code, (3, 3))


@pytest.mark.skipif(not os.path.exists(SHARED_CSV), reason="the shared TGS data is not here")
def test_every_mask_of_the_real_train_csv_round_trips():
    from pyimagesearch.dataset import read_mask
    masks_folder = os.path.join(os.path.dirname(SHARED_CSV), "train", "masks")
    with open(SHARED_CSV, newline="") as handle:
        rows = list(csv.DictReader(handle))
    checked = 0
    for row in rows:
        code = row["rle_mask"]
        mask = decode(code, (101, 101))
        assert encode(mask) == code, row["id"]
        path = os.path.join(masks_folder, row["id"] + ".png")
        if os.path.exists(path):
            assert np.array_equal(read_mask(path), mask), row["id"]
            checked += 1
    assert checked >= 3000
