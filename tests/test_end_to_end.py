"""Train and predict on generated data, through the scripts' own entry points."""
import csv
import os
import shutil

import cv2
import numpy as np
import pytest
import torch

import predict
import train
from pyimagesearch import config, hardware, split
from pyimagesearch.checkpoint import load_model
from pyimagesearch.cli import parse_settings
from pyimagesearch.dataset import read_mask

SMALL = ["--input-image-width", "64", "--input-image-height", "64", "--batch-size", "8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One short training run on 200 generated images (about a minute), shared below."""
    from pyimagesearch import synthetic
    data = synthetic.write_dataset(str(tmp_path_factory.mktemp("data")), 200, seed=3)
    output = str(tmp_path_factory.mktemp("output"))
    train.main(["--dataset-path", data, "--base-output", output, "--num-epochs", "18",
                "--init-lr", "0.002", *SMALL])
    return data, output


def test_training_writes_every_output_file(trained):
    data, output = trained
    for name in ("unet_tgs_salt.pth", "unet_tgs_salt_last.pth", "plot.png", "history.csv",
                 "test_paths.txt"):
        assert os.path.getsize(os.path.join(output, name)) > 0, name
    plot = cv2.imread(os.path.join(output, "plot.png"))
    assert plot is not None and plot.shape[0] > 100
    with open(os.path.join(output, "history.csv")) as handle:
        rows = handle.read().splitlines()
    assert rows[0].startswith("epoch,train_loss,val_loss,val_iou,val_dice,val_score")
    assert len(rows) == 19
    with open(os.path.join(output, "test_paths.txt")) as handle:
        pairs = [line.rstrip("\n").split("\t") for line in handle]
    assert len(pairs) == 30  # ceil(0.15 * 200)
    for image, mask in pairs:
        assert os.path.basename(image) == os.path.basename(mask)
        assert os.path.exists(image) and os.path.exists(mask)
    assert not [f for f in os.listdir(output) if ".tmp" in f], "temporary files left behind"


def test_the_best_model_is_kept_with_its_epoch(trained):
    _, output = trained
    _, arguments, best = load_model(os.path.join(output, "unet_tgs_salt.pth"))
    _, _, last = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
    assert last["epoch"] == 18
    assert best["metrics"]["score"] >= last["metrics"]["score"]
    assert arguments["outSize"] == [64, 64] and arguments["encChannels"][0] == 1


def test_learning_works_on_the_generated_data(trained, capsys):
    _, output = trained
    predict.main(["--base-output", output, "--evaluate", *SMALL])
    line = capsys.readouterr().out
    iou = float(line.split("mean IoU")[1].split()[0])
    assert iou > 0.8, line


def test_scores_out_holds_each_test_image_and_their_mean(trained, tmp_path, capsys):
    _, output = trained
    scores = str(tmp_path / "scores.csv")
    predict.main(["--base-output", output, "--evaluate", "--scores-out", scores, *SMALL])
    out = capsys.readouterr().out
    printed = float(out.split("competition score")[1].split()[0])
    with open(scores) as handle:
        rows = list(csv.DictReader(handle))
    masks = {os.path.splitext(os.path.basename(image))[0]: mask for image, mask
             in split.read_test_paths(os.path.join(output, "test_paths.txt"))}
    assert {row["id"] for row in rows} == set(masks) and len(rows) == len(masks)
    assert np.mean([float(row["score"]) for row in rows]) == pytest.approx(printed, abs=1e-4)
    for row in rows:
        assert int(row["salt_pixels"]) == np.count_nonzero(read_mask(masks[row["id"]]))
    # the shortfall's shares, each rounded to 4 places, add up to 1 - the score
    shortfall = out.split("falls short of 1:")[1].splitlines()[0]
    shares = [float(part.split("(-")[1].rstrip(")")) for part in shortfall.split(";")]
    assert sum(shares) == pytest.approx(1 - printed, abs=3e-4)


def test_predict_averages_the_models_of_a_folder(trained, tmp_path, capsys):
    _, output = trained
    best, last = (os.path.join(output, name)
                  for name in ("unet_tgs_salt.pth", "unet_tgs_salt_last.pth"))
    for folder, members in (("twice", (best, best)), ("both", (best, last))):
        (tmp_path / folder).mkdir()
        for index, member in enumerate(members):
            os.symlink(member, tmp_path / folder / f"{index}.pth")

    def metrics(model_path):
        predict.main(["--base-output", output, "--model-path", model_path, "--evaluate",
                      "--worst", "0", *SMALL])
        return capsys.readouterr().out.split("mean IoU")[1].splitlines()[0]

    # a model averaged with itself is that model, through the whole prediction path
    assert metrics(str(tmp_path / "twice")) == metrics(best)
    assert float(metrics(str(tmp_path / "both")).split()[0]) > 0.8


def test_evaluate_pictures_the_worst_images_and_the_score_by_coverage(trained, tmp_path):
    _, output = trained
    predict.main(["--base-output", output, "--evaluate", "--worst", "3",
                  "--worst-path", str(tmp_path / "worst.png"),
                  "--coverage-plot-path", str(tmp_path / "coverage.png"), *SMALL])
    assert (tmp_path / "worst.png").stat().st_size > 0
    assert (tmp_path / "coverage.png").stat().st_size > 0


def test_predict_exports_onnx_and_checks_it(trained, tmp_path, capsys):
    for package in ("onnx", "onnxscript", "onnxruntime"):
        pytest.importorskip(package, reason=f"{package} is optional and not installed here")
    _, output = trained
    predict.main(["--base-output", output, "--export-onnx", str(tmp_path / "unet.onnx")])
    line = capsys.readouterr().out.split("differ from PyTorch's by at most")[1].split()[0]
    assert (tmp_path / "unet.onnx").stat().st_size > 0 and float(line) < 1e-4


def test_predict_plots_ten_distinct_test_images(trained):
    _, output = trained
    predict.main(["--base-output", output, *SMALL])
    figures = os.listdir(os.path.join(output, "predictions"))
    assert len(figures) == 10 and len(set(figures)) == 10
    with open(os.path.join(output, "test_paths.txt")) as handle:
        test_names = {os.path.basename(line.split("\t")[0]) for line in handle}
    assert set(figures) <= test_names


def test_predict_writes_a_binary_mask_per_image_at_its_size(trained, tmp_path):
    data, output = trained
    images = tmp_path / "in"
    images.mkdir()
    for name in sorted(os.listdir(os.path.join(data, "images")))[:5]:
        pixels = cv2.imread(os.path.join(data, "images", name))
        cv2.imwrite(str(images / name), pixels)
    # a non-square image of another size is predicted at its own size
    cv2.imwrite(str(images / "wide.jpg"), np.full((50, 80, 3), 128, np.uint8))
    predict.main(["--base-output", output, "--input", str(images),
                  "--masks-out", str(tmp_path / "out")])
    written = sorted(os.listdir(tmp_path / "out"))
    assert len(written) == 6 and "wide.png" in written
    for name in written:
        mask = cv2.imread(str(tmp_path / "out" / name), cv2.IMREAD_UNCHANGED)
        assert mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255}
        assert mask.shape == ((50, 80) if name == "wide.png" else (101, 101))


def test_predict_names_the_files_it_leaves_out(trained, tmp_path, capsys):
    data, output = trained
    images = tmp_path / "in"
    images.mkdir()
    name = sorted(os.listdir(os.path.join(data, "images")))[0]
    shutil.copy(os.path.join(data, "images", name), images / name)
    (images / "notes.txt").write_text("where these came from")
    (images / "._hidden.png").write_bytes(b"macOS metadata")
    predict.main(["--base-output", output, "--input", str(images),
                  "--masks-out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert "left out 1 file(s) that are not images" in printed and "notes.txt" in printed
    assert os.listdir(tmp_path / "out") == [name]


def test_predict_takes_one_image_file(trained, tmp_path):
    data, output = trained
    image = os.path.join(data, "images", sorted(os.listdir(os.path.join(data, "images")))[0])
    predict.main(["--base-output", output, "--input", image, "--masks-out", str(tmp_path / "out"),
                  "--submission", str(tmp_path / "one.csv")])
    name = os.path.splitext(os.path.basename(image))[0]
    assert os.listdir(tmp_path / "out") == [name + ".png"]
    with open(tmp_path / "one.csv") as handle:
        assert [row["id"] for row in csv.DictReader(handle)] == [name]


def test_same_seed_same_weights(tmp_path, synthetic_folder):
    weights = []
    for run in ("a", "b"):
        output = str(tmp_path / run)
        train.main(["--dataset-path", synthetic_folder, "--base-output", output,
                    "--num-epochs", "1", *SMALL])
        model, _, _ = load_model(os.path.join(output, "unet_tgs_salt_last.pth"))
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_empty_stock_folder_falls_back_to_synthetic_data(tmp_path, monkeypatch, capsys):
    stock = tmp_path / "dataset" / "train"
    (stock / "images").mkdir(parents=True)
    monkeypatch.setattr(config, "DATASET_PATH", str(stock))
    monkeypatch.setattr(config, "IMAGE_DATASET_PATH", str(stock / "images"))
    monkeypatch.setattr(config, "MASK_DATASET_PATH", str(stock / "masks"))
    monkeypatch.setattr(split, "STOCK_IMAGE_FOLDER", str(stock / "images"))
    output = tmp_path / "out"
    train.main(["--base-output", str(output), "--num-epochs", "1",
                "--synthetic-num-images", "20", *SMALL])
    assert "synthetic" in capsys.readouterr().out
    assert len(os.listdir(output / "synthetic" / "images")) == 20
    assert (output / "unet_tgs_salt.pth").exists()


def test_an_empty_folder_the_user_chose_is_an_error(tmp_path, capsys):
    (tmp_path / "data" / "images").mkdir(parents=True)
    (tmp_path / "data" / "masks").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        train.main(["--dataset-path", str(tmp_path / "data"), "--base-output",
                    str(tmp_path / "out")])
    assert "no images" in str(exit_info.value.code)
    assert not (tmp_path / "out" / "synthetic").exists()


def test_predict_before_training_says_to_train(tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--base-output", str(tmp_path)])
    assert "train" in str(exit_info.value.code)


@pytest.fixture(scope="module")
def salt_run(tmp_path_factory, synthetic_folder):
    """The salt preset, briefly, with tuning, as on a CPU without bf16 units:
    its model file must carry the tuned prediction rules and the width the
    preset chose for the machine."""
    output = str(tmp_path_factory.mktemp("salt"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(hardware, "cpu_has_native_bf16", lambda: False)
        train.main(["--preset", "salt", "--dataset-path", synthetic_folder, "--base-output",
                    output, "--device", "cpu", "--num-epochs", "2", "--num-levels", "3",
                    "--tune-threshold", "true", *SMALL])
    return output


def test_the_preset_with_tuning_stores_tuned_rules_with_the_best_model(salt_run):
    _, arguments, metadata = load_model(os.path.join(salt_run, "unet_tgs_salt.pth"))
    assert arguments["batchNorm"] is True and arguments["outSize"] == [64, 64]
    assert arguments["encChannels"] == [1, 8, 16, 32]
    rules = metadata["prediction"]
    assert rules["tta"] is True and 0 < rules["threshold"] < 1 and rules["min_area"] >= 0
    tuning = metadata["tuning"]
    assert tuning["tuned_score"] >= tuning["plain_score"] - 1e-9


def test_submission_codes_are_the_written_masks(salt_run, synthetic_folder, tmp_path, capsys):
    from pyimagesearch.rle import decode
    images = os.path.join(synthetic_folder, "images")
    predict.main(["--base-output", salt_run, "--input", images, "--masks-out",
                  str(tmp_path / "masks"), "--submission", str(tmp_path / "submission.csv")])
    _, _, metadata = load_model(os.path.join(salt_run, "unet_tgs_salt.pth"))
    assert f"threshold {metadata['prediction']['threshold']}," in capsys.readouterr().out
    with open(tmp_path / "submission.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == len(os.listdir(images))
    for row in rows:
        mask = cv2.imread(str(tmp_path / "masks" / f"{row['id']}.png"), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(decode(row["rle_mask"], mask.shape), mask // 255), row["id"]


def test_flags_given_to_predict_override_the_stored_rules(salt_run, capsys):
    predict.main(["--base-output", salt_run, "--evaluate", "--threshold", "0.9",
                  "--min-salt-area", "7", "--tta", "false", *SMALL])
    assert "threshold 0.9, minimum salt area 7 px, test-time flips off" in capsys.readouterr().out


def test_the_dataset_moves_into_a_gpus_memory_only_where_it_can_be_batched_there():
    gpu, cpu = torch.device("cuda"), torch.device("cpu")
    assert train.data_on_device(parse_settings([]), gpu)
    assert not train.data_on_device(parse_settings([]), cpu)
    # loader workers are other processes, which need the data in main memory
    assert not train.data_on_device(parse_settings(["--num-workers", "2"]), gpu)
    assert not train.data_on_device(parse_settings(["--data-on-device", "false"]), gpu)


@pytest.mark.parametrize("native", [False, True])
def test_the_run_says_what_the_preset_changed_for_this_machine(monkeypatch, capsys, native):
    from types import SimpleNamespace
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    settings = parse_settings(["--preset", "salt", "--device", "cpu"])
    context = SimpleNamespace(device=torch.device("cpu"), distributed=True, world_size=2)
    progress = SimpleNamespace(num_epochs=200, planned_epochs=None)
    train.describe_run(settings, context, progress, batch_size=16)
    shown = capsys.readouterr().out
    assert ("on a CPU without bf16 units: base-filters 8" in shown) is not native
    assert ("in bf16" in shown) is native
