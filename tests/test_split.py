"""The split into training and validation images, and the test-paths file."""
import pytest

from pyimagesearch.dataset import DataError
from pyimagesearch.split import read_test_paths, split_pairs, write_test_paths


def test_the_split_is_seeded_and_holds_out_its_share():
    images = [f"i{n}.png" for n in range(20)]
    masks = [f"m{n}.png" for n in range(20)]
    first = split_pairs(images, masks, 0.15, seed=4)
    assert first == split_pairs(images, masks, 0.15, seed=4)
    train_images, test_images, train_masks, test_masks = first
    assert len(test_images) == 3 and len(train_images) == 17
    assert [image[1:] for image in test_images] == [mask[1:] for mask in test_masks]


def test_a_split_that_leaves_nothing_is_refused():
    with pytest.raises(DataError, match="no image for training"):
        split_pairs(["a.png"], ["a.png"], 0.5, seed=0)


def test_test_paths_round_trip(tmp_path):
    path = str(tmp_path / "test_paths.txt")
    write_test_paths(path, ["/d/i/a b.png", "/d/i/c.png"], ["/d/m/a b.png", "/d/m/c.png"])
    assert read_test_paths(path) == [["/d/i/a b.png", "/d/m/a b.png"],
                                     ["/d/i/c.png", "/d/m/c.png"]]


def test_a_file_that_is_not_a_test_paths_file_is_refused(tmp_path):
    path = tmp_path / "other.txt"
    path.write_text("just one column\n")
    with pytest.raises(DataError, match="not a test-paths file"):
        read_test_paths(str(path))
