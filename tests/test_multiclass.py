"""NUM_CLASSES 3 end to end: two kinds of bodies on the generated sections."""
import csv
import os

import cv2
import numpy as np
import pytest

import predict
import train
from pyimagesearch import synthetic
from pyimagesearch.checkpoint import load_model

SMALL = ["--input-image-width", "64", "--input-image-height", "64", "--batch-size", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    data = synthetic.write_dataset(str(tmp_path_factory.mktemp("three")), 160, seed=3,
                                   num_classes=3)
    output = str(tmp_path_factory.mktemp("output"))
    train.main(["--dataset-path", data, "--base-output", output, "--num-classes", "3",
                "--num-epochs", "16", "--init-lr", "0.002", *SMALL])
    return data, output


def test_three_classes_are_learned(trained):
    _, output = trained
    _, arguments, metadata = load_model(os.path.join(output, "unet_tgs_salt.pth"))
    assert arguments["nbClasses"] == 3
    # predicting background everywhere would give a mean IoU of about 0.3
    assert metadata["metrics"]["iou"] > 0.5
    with open(os.path.join(output, "history.csv")) as handle:
        best = max(csv.DictReader(handle), key=lambda row: float(row["val_score"]))
    assert float(best["val_iou_1"]) > 0.3 and float(best["val_iou_2"]) > 0.3
    assert float(best["val_score"]) == pytest.approx(float(best["val_iou"]))


def test_evaluate_prints_each_class(trained, capsys):
    _, output = trained
    predict.main(["--base-output", output, "--evaluate"])
    out = capsys.readouterr().out
    assert all(f"class {index}: IoU" in out for index in range(3))
    assert float(out.split("mean IoU")[1].split()[0]) > 0.5


def test_predict_writes_class_index_masks_and_coloured_previews(trained, tmp_path):
    data, output = trained
    images = os.path.join(data, "images")
    predict.main(["--base-output", output, "--input", images, "--masks-out", str(tmp_path)])
    names = sorted(name for name in os.listdir(tmp_path) if name.endswith(".png"))
    assert len(names) == 160
    values = set()
    for name in names[:20]:
        mask = cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED)
        assert mask.shape == (101, 101) and mask.dtype == np.uint8
        values |= set(np.unique(mask).tolist())
    assert values == {0, 1, 2}
    preview = cv2.imread(str(tmp_path / "preview" / names[0]))
    assert preview.shape == (101, 101, 3)


def test_a_submission_is_refused_for_several_classes(trained, tmp_path, capsys):
    data, output = trained
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--base-output", output, "--input", os.path.join(data, "images"),
                      "--submission", str(tmp_path / "s.csv")])
    assert "one class" in str(exit_info.value.code)
