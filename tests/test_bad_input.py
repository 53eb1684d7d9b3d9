"""Bad input and faults: each answered by one clear line, with nothing lost."""
import os
import shutil

import pytest

import predict
import train
from pyimagesearch import synthetic, trainer
from pyimagesearch.checkpoint import load_model
from pyimagesearch.engine import TrainingDiverged

TINY = ["--input-image-width", "32", "--input-image-height", "32", "--num-levels", "2",
        "--num-epochs", "1"]


@pytest.fixture
def small_data(tmp_path):
    return synthetic.write_dataset(str(tmp_path / "data"), 12, seed=5)


def error_of(main, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    message = str(exit_info.value.code)
    assert message.startswith("[ERROR]") and "\n" not in message
    return message


def test_missing_dataset_folder(tmp_path):
    message = error_of(train.main, ["--dataset-path", str(tmp_path / "absent"),
                                    "--base-output", str(tmp_path / "out")])
    assert "absent" in message and "does not exist" in message


def test_too_few_images_for_a_split(tmp_path):
    data = synthetic.write_dataset(str(tmp_path / "one"), 1, seed=1)
    message = error_of(train.main, ["--dataset-path", data, "--base-output", str(tmp_path / "o"),
                                    *TINY])
    assert "no image for training" in message


def test_batch_size_larger_than_the_data_still_trains(tmp_path, small_data):
    output = tmp_path / "out"
    train.main(["--dataset-path", small_data, "--base-output", str(output),
                "--batch-size", "1000", *TINY])
    assert (output / "unet_tgs_salt.pth").exists()


def test_tuning_on_a_one_image_validation_split_finishes(tmp_path, small_data, capsys):
    # 12 images and TEST_SPLIT 0.05 hold out one image, too few to cross-fit
    output = tmp_path / "out"
    train.main(["--dataset-path", small_data, "--base-output", str(output), *TINY,
                "--test-split", "0.05", "--tune-threshold", "true"])
    assert "1 for validation" in capsys.readouterr().out
    _, _, metadata = load_model(str(output / "unet_tgs_salt.pth"))
    assert metadata["tuning"]["cross_fitted_score"] is None
    assert 0 < metadata["prediction"]["threshold"] < 1


def test_corrupt_image_is_named(tmp_path, small_data):
    victim = os.path.join(small_data, "images", "synthetic_00003.png")
    with open(victim, "r+b") as handle:
        handle.truncate(40)
    message = error_of(train.main, ["--dataset-path", small_data, "--base-output",
                                    str(tmp_path / "out"), *TINY])
    assert "synthetic_00003.png" in message
    assert "not a readable image" in message


def test_corrupt_image_is_skipped_on_request(tmp_path, small_data, capsys):
    with open(os.path.join(small_data, "masks", "synthetic_00004.png"), "wb") as handle:
        handle.write(b"this is not a PNG")
    output = tmp_path / "out"
    train.main(["--dataset-path", small_data, "--base-output", str(output),
                "--skip-bad-files", "true", *TINY])
    out = capsys.readouterr().out
    assert "[WARN] skipped 1 unreadable" in out and "synthetic_00004.png" in out
    with open(output / "test_paths.txt") as handle:
        assert "synthetic_00004" not in handle.read()


def test_two_files_with_one_name(tmp_path, small_data):
    os.rename(os.path.join(small_data, "images", "synthetic_00001.png"),
              os.path.join(small_data, "images", "synthetic_00002.jpg"))
    message = error_of(train.main, ["--dataset-path", small_data, "--base-output",
                                    str(tmp_path / "out"), *TINY])
    assert "synthetic_00002" in message and "share the name" in message


def test_output_folder_that_cannot_be_created(tmp_path, small_data):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    message = error_of(train.main, ["--dataset-path", small_data,
                                    "--base-output", str(blocker / "out"), *TINY])
    assert "cannot create the output folder" in message


def test_a_diverging_run_stops_and_keeps_the_last_good_epoch(tmp_path, small_data, monkeypatch):
    real_epoch = trainer.train_one_epoch
    calls = []

    def diverge_on_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise TrainingDiverged("the training loss became nan; lower INIT_LR")
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(trainer, "train_one_epoch", diverge_on_second_epoch)
    output = tmp_path / "out"
    message = error_of(train.main, ["--dataset-path", small_data, "--base-output", str(output),
                                    *TINY, "--num-epochs", "3"])
    assert "nan" in message
    _, _, metadata = load_model(str(output / "unet_tgs_salt_last.pth"))
    assert metadata["epoch"] == 1


@pytest.fixture
def trained_output(tmp_path, small_data):
    output = str(tmp_path / "trained")
    train.main(["--dataset-path", small_data, "--base-output", output, *TINY])
    return output


def test_predict_on_an_empty_folder(tmp_path, trained_output):
    (tmp_path / "empty").mkdir()
    message = error_of(predict.main, ["--base-output", trained_output, "--input",
                                      str(tmp_path / "empty"), "--masks-out", str(tmp_path / "m")])
    assert "no images" in message


def test_predict_on_a_missing_folder(tmp_path, trained_output):
    message = error_of(predict.main, ["--base-output", trained_output, "--input",
                                      str(tmp_path / "nope"), "--masks-out", str(tmp_path / "m")])
    assert "does not exist" in message


def test_predict_into_a_folder_that_cannot_be_created(tmp_path, trained_output, small_data):
    blocker = tmp_path / "file"
    blocker.write_text("")
    message = error_of(predict.main, ["--base-output", trained_output, "--input",
                                      os.path.join(small_data, "images"),
                                      "--masks-out", str(blocker / "masks")])
    assert "cannot create" in message


def test_predict_without_a_test_split_says_to_train(tmp_path, trained_output):
    os.remove(os.path.join(trained_output, "test_paths.txt"))
    message = error_of(predict.main, ["--base-output", trained_output])
    assert "train.py" in message


def test_input_without_masks_out_is_a_usage_error(trained_output, capsys):
    with pytest.raises(SystemExit) as exit_info:
        predict.main(["--base-output", trained_output, "--input", "somewhere"])
    assert exit_info.value.code == 2
    assert "--masks-out" in capsys.readouterr().err


def test_predict_refuses_two_inputs_with_one_name(tmp_path, trained_output, small_data):
    folder = tmp_path / "input"
    folder.mkdir()
    for extension in (".png", ".jpg"):
        shutil.copy(os.path.join(small_data, "images", "synthetic_00001.png"),
                    folder / f"a{extension}")
    message = error_of(predict.main, ["--base-output", trained_output, "--input", str(folder),
                                      "--submission", str(tmp_path / "sub.csv")])
    assert "a.png" in message and "a.jpg" in message
    assert not (tmp_path / "sub.csv").exists()


def test_predict_never_writes_masks_over_its_input(tmp_path, trained_output, small_data):
    folder = tmp_path / "input"
    shutil.copytree(os.path.join(small_data, "images"), folder)
    before = {name: (folder / name).read_bytes() for name in os.listdir(folder)}
    message = error_of(predict.main, ["--base-output", trained_output, "--input", str(folder),
                                      "--masks-out", str(folder)])
    assert "over" in message and str(folder) in message
    assert {name: (folder / name).read_bytes() for name in os.listdir(folder)} == before
