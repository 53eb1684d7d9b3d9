import os

import pytest

from pyimagesearch import config, hardware
from pyimagesearch.cli import build_parser, parse_settings


def test_defaults_are_the_tutorials():
    settings = parse_settings([])
    assert (settings.NUM_EPOCHS, settings.BATCH_SIZE, settings.INIT_LR) == (40, 64, 0.001)
    assert (settings.INPUT_IMAGE_WIDTH, settings.INPUT_IMAGE_HEIGHT) == (128, 128)
    assert (settings.TEST_SPLIT, settings.THRESHOLD, settings.NUM_LEVELS) == (0.15, 0.5, 3)


def test_flags_override_with_the_right_types():
    settings = parse_settings(["--num-epochs", "5", "--init-lr", "0.01",
                               "--channels-last", "false", "--model-variant", "tutorial"])
    assert settings.NUM_EPOCHS == 5 and settings.INIT_LR == 0.01
    assert settings.CHANNELS_LAST is False and settings.MODEL_VARIANT == "tutorial"
    assert settings.GIVEN == {"NUM_EPOCHS", "INIT_LR", "CHANNELS_LAST", "MODEL_VARIANT"}


def test_derived_paths_follow_the_folder_they_are_in(tmp_path):
    settings = parse_settings(["--base-output", str(tmp_path / "run"),
                               "--dataset-path", str(tmp_path / "data")])
    assert settings.MODEL_PATH == os.path.join(str(tmp_path / "run"), "unet_tgs_salt.pth")
    assert settings.PLOT_PATH == os.path.join(str(tmp_path / "run"), "plot.png")
    assert settings.TEST_PATHS == os.path.join(str(tmp_path / "run"), "test_paths.txt")
    assert settings.IMAGE_DATASET_PATH == os.path.join(str(tmp_path / "data"), "images")
    assert settings.MASK_DATASET_PATH == os.path.join(str(tmp_path / "data"), "masks")


def test_a_path_given_explicitly_is_kept(tmp_path):
    settings = parse_settings(["--base-output", str(tmp_path), "--model-path", "m.pth"])
    assert settings.MODEL_PATH == "m.pth"
    assert settings.PLOT_PATH == os.path.join(str(tmp_path), "plot.png")


def test_overrides_do_not_leak_into_the_config_module():
    parse_settings(["--num-epochs", "2"])
    assert config.NUM_EPOCHS == 40
    assert parse_settings([]).NUM_EPOCHS == 40


@pytest.mark.parametrize("argv, message", [
    (["--num-epochs", "-3"], "NUM_EPOCHS"),
    (["--test-split", "1.5"], "TEST_SPLIT"),
    (["--threshold", "0"], "THRESHOLD"),
    (["--num-channels", "2"], "NUM_CHANNELS"),
    (["--model-variant", "big"], "MODEL_VARIANT"),
    (["--ema-decay", "1"], "EMA_DECAY"),
    (["--dropout", "1"], "DROPOUT"),
    (["--swa-share", "1"], "SWA_SHARE"),
    (["--swa-share", "0.25", "--ema-decay", "0.999"], "two ways of averaging"),
    (["--batch-size", "many"], "invalid int"),
    (["--channels-last", "maybe"], "true or false"),
    (["--no-such-flag", "1"], "unrecognized arguments"),
])
def test_bad_values_are_refused_with_the_flag_named(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse_settings(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_lists_every_constant():
    text = build_parser("x").format_help()
    for flag in ("--num-epochs", "--dataset-path", "--base-output", "--batch-size",
                 "--num-levels", "--num-channels", "--model-variant", "--threshold"):
        assert flag in text


def test_help_gives_config_values_not_the_none_that_means_not_given():
    parser = build_parser("x")
    parser.add_argument("--resume", action="store_true", help="continue")
    text = parser.format_help()
    assert "default: 0.15" in text and "(default: None)" not in text
    assert "continue (default: False)" in text  # a script's own flag keeps its default


def test_the_salt_preset_sets_its_values_and_flags_still_win(monkeypatch):
    from pyimagesearch.presets import PRESETS
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: True)
    settings = parse_settings(["--preset", "salt", "--num-epochs", "3"])
    assert settings.PRESET == "salt" and settings.NUM_EPOCHS == 3
    for name, value in PRESETS["salt"].items():
        if name != "NUM_EPOCHS":
            assert getattr(settings, name) == value, name
    assert settings.BATCH_NORM and settings.TTA and settings.LOSS == "bce+lovasz"
    plain = parse_settings([])
    assert plain.PRESET is None and plain.LOSS == "bce" and not plain.BATCH_NORM


@pytest.mark.parametrize("device, native, flags, width, adapted", [
    ("cpu", False, [], 8, {"BASE_FILTERS": 8}),
    ("cpu", True, [], 16, {}),
    ("cuda", False, [], 16, {}),
    ("cpu", False, ["--base-filters", "12"], 12, {}),
])
def test_the_salt_preset_narrows_on_a_cpu_without_bf16_units(monkeypatch, device, native,
                                                              flags, width, adapted):
    monkeypatch.setattr(hardware, "cpu_has_native_bf16", lambda: native)
    settings = parse_settings(["--preset", "salt", "--device", device, *flags])
    assert settings.BASE_FILTERS == width and settings.ADAPTED == adapted
    gpu = parse_settings(["--preset", "salt-gpu", "--device", device])
    assert gpu.BASE_FILTERS == 32 and gpu.ADAPTED == {}
    plain = parse_settings(["--device", device])
    assert plain.BASE_FILTERS == config.BASE_FILTERS and plain.ADAPTED == {}


def test_help_names_the_preset_and_what_it_sets(capsys):
    with pytest.raises(SystemExit):
        build_parser("x").parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "--preset {salt,salt-gpu}" in shown and "loss bce+lovasz" in shown
    assert "base-filters 32" in shown


def test_the_gpu_preset_is_the_salt_recipe_widened():
    gpu, cpu = parse_settings(["--preset", "salt-gpu"]), parse_settings(["--preset", "salt"])
    assert gpu.BASE_FILTERS > cpu.BASE_FILTERS and gpu.LOSS == cpu.LOSS
    assert gpu.TIME_BUDGET <= 15


def test_an_unknown_preset_or_loss_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_settings(["--preset", "fast"])
    with pytest.raises(SystemExit):
        parse_settings(["--loss", "bce+focal"])
    assert "bce+focal" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--num-classes", "3", "--class-colors", "0,0,0;255,0,0"], "names 2 colours"),
    (["--num-classes", "3", "--class-colors", "0,0,0;red;0,0,255"], "distinct R,G,B"),
    (["--num-classes", "3", "--loss", "lovasz_elu"], "not for 3 classes"),
    (["--preset", "salt", "--num-classes", "3"], "--image-gate false"),
    (["--num-classes", "3", "--tune-threshold", "true"], "--tune-threshold false"),
    (["--num-classes", "0"], "NUM_CLASSES"),
    (["--num-classes", "3", "--image-gate", "true"], "--image-gate false"),
    (["--deep-supervision", "true"], "--image-gate true"),
    (["--model-variant", "tutorial", "--residual-blocks", "true"], "--model-variant aligned"),
    (["--preset", "salt", "--model-variant", "tutorial"], "--residual-blocks false"),
])
def test_settings_that_disagree_are_refused(capsys, argv, message):
    with pytest.raises(SystemExit):
        parse_settings(argv)
    assert message in capsys.readouterr().err


def test_several_classes_with_their_colours_are_accepted():
    settings = parse_settings(["--num-classes", "3", "--class-colors", "0,0,0;255,0,0;0,0,255"])
    assert settings.NUM_CLASSES == 3 and settings.MODEL_VARIANT == "aligned"
