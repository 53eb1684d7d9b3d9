"""tools/holdout.py: a fixed test part, apart from everything a run sees."""
import os

import pytest

from pyimagesearch.dataset import pair_image_mask_paths
from pyimagesearch.split import read_test_paths
from tools.holdout import main, make_holdout


def test_the_test_part_is_apart_and_the_same_for_a_seed(synthetic_folder, tmp_path):
    test = make_holdout(synthetic_folder, str(tmp_path / "a"), test_size=20, seed=5)
    dev_images, dev_masks = pair_image_mask_paths(str(tmp_path / "a" / "dev" / "images"),
                                                  str(tmp_path / "a" / "dev" / "masks"))
    assert len(test) == 20 and len(dev_images) == 160 - 20
    listed = read_test_paths(str(tmp_path / "a" / "test_paths.txt"))
    assert [tuple(pair) for pair in listed] == test
    # every test image has its own mask, and none of them is in the dev part
    assert all(os.path.basename(i).split(".")[0] == os.path.basename(m).split(".")[0]
               for i, m in test)
    test_names = {os.path.basename(image) for image, _ in test}
    assert not test_names & {os.path.basename(image) for image in dev_images}
    assert os.path.realpath(dev_masks[0]).startswith(os.path.realpath(synthetic_folder))
    again = make_holdout(synthetic_folder, str(tmp_path / "b"), test_size=20, seed=5)
    assert {os.path.basename(i) for i, _ in again} == test_names


def test_an_existing_folder_is_not_written_over(synthetic_folder, tmp_path):
    with pytest.raises(SystemExit):
        main(["--dataset-path", synthetic_folder, "--out", str(tmp_path)])


def test_a_missing_dataset_is_named_and_nothing_is_written(tmp_path, capsys):
    out = tmp_path / "holdout"
    with pytest.raises(SystemExit) as stop:
        main(["--dataset-path", str(tmp_path / "nowhere"), "--out", str(out)])
    assert stop.value.code == 2
    assert "nowhere" in capsys.readouterr().err
    assert not out.exists()
