"""Command-line overrides of the constants in ``config.py``.

Every upper-case constant becomes a flag of the same name in lower-kebab case.
The result is a ``Settings`` object: the scripts and the package read their
settings from it rather than from the module, so one run's overrides never
leak into another run in the same process (the tests start many).
"""
import argparse
import os
import re
import types

from pyimagesearch import config
from pyimagesearch.dataset import CHANNEL_COUNTS, MAX_CLASSES, parse_palette
from pyimagesearch.engine import PRECISIONS
from pyimagesearch.losses import LOSSES, is_valid_name
from pyimagesearch.model import VARIANTS
from pyimagesearch.optim import SCHEDULES
from pyimagesearch.presets import DESCRIPTIONS, PRESETS, preset_settings

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}

# constants that describe where the code lives, not how a run behaves
_NOT_SETTINGS = {"PROJECT_ROOT"}


def _parse_bool(text):
    lowered = text.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _is_positive(value):
    return value >= 1


def _one_of(values):
    return " or ".join(", ".join(repr(value) for value in values).rsplit(", ", 1))


# name -> (test, what the value must be). Checked on the final value, so a bad
# value typed into config.py is caught as surely as one given as a flag.
_CHECKS = {
    "TEST_SPLIT": (lambda v: 0 < v < 1, "a fraction between 0 and 1, e.g. 0.15"),
    "THRESHOLD": (lambda v: 0 < v < 1, "a probability between 0 and 1, e.g. 0.5"),
    "INIT_LR": (lambda v: v > 0, "a positive learning rate, e.g. 0.001"),
    "NUM_EPOCHS": (_is_positive, "a whole number >= 1"),
    "TIME_BUDGET": (lambda v: v >= 0, "0 (no limit) or a number of minutes, e.g. 55"),
    "BATCH_SIZE": (_is_positive, "a whole number >= 1"),
    "EVAL_BATCH_SIZE": (_is_positive, "a whole number >= 1"),
    "NUM_LEVELS": (_is_positive, "a whole number >= 1"),
    "BASE_FILTERS": (_is_positive, "a whole number >= 1"),
    "BOTTLENECK_FILTERS": (lambda v: v >= 0, "0 (double the level above) or a whole number"),
    "DECODER_WIDTH": (lambda v: 0 < v <= 4, "a share of the encoder's width above 0, e.g. 0.5"),
    "DROPOUT": (lambda v: 0 <= v < 1, "0 (off) or a chance below 1, e.g. 0.1"),
    "NUM_CLASSES": (lambda v: 1 <= v <= MAX_CLASSES,
                    f"1 (salt / not salt) or the number of classes, background included, "
                    f"up to {MAX_CLASSES}"),
    "NUM_CHANNELS": (lambda v: v in CHANNEL_COUNTS, f"{_one_of(CHANNEL_COUNTS)} (gray or RGB)"),
    "INPUT_IMAGE_WIDTH": (lambda v: v >= 8, "at least 8 pixels"),
    "INPUT_IMAGE_HEIGHT": (lambda v: v >= 8, "at least 8 pixels"),
    "NUM_WORKERS": (lambda v: v >= 0, "a whole number >= 0"),
    "MICRO_BATCH_SIZE": (lambda v: v >= 0, "0 (whole batches) or a whole number of images"),
    "NUM_PREDICTIONS": (_is_positive, "a whole number >= 1"),
    "SYNTHETIC_NUM_IMAGES": (lambda v: v >= 10, "at least 10"),
    "MODEL_VARIANT": (lambda v: v in VARIANTS, _one_of(VARIANTS)),
    "LR_SCHEDULE": (lambda v: v in SCHEDULES, _one_of(SCHEDULES)),
    "WARMUP_EPOCHS": (lambda v: v >= 0, "a number of epochs >= 0, e.g. 2"),
    "WEIGHT_DECAY": (lambda v: v >= 0, "a decay rate >= 0, e.g. 0.0001"),
    "GRAD_CLIP": (lambda v: v >= 0, "0 (off) or a gradient norm > 0, e.g. 1.0"),
    "EMA_DECAY": (lambda v: 0 <= v < 1, "0 (off) or a decay below 1, e.g. 0.999"),
    "SWA_SHARE": (lambda v: 0 <= v < 1, "0 (off) or a share of the epochs below 1, e.g. 0.25"),
    "SWA_LR": (lambda v: v > 0, "a positive learning rate, e.g. 0.0005"),
    "MIN_SALT_AREA": (lambda v: v >= 0, "a number of pixels >= 0"),
    "LOSS": (is_valid_name, f"{_one_of(LOSSES)}, or several joined by '+', e.g. 'bce+lovasz'"),
    "FINAL_LOSS": (is_valid_name, f"{_one_of(LOSSES)}, or several joined by '+'"),
    "FINAL_LOSS_SHARE": (lambda v: 0 <= v <= 1, "a share of the epochs from 0 to 1, e.g. 0.2"),
    "PRECISION": (lambda v: v in PRECISIONS, _one_of(PRECISIONS)),
    "DEVICE": (lambda v: re.fullmatch(r"cpu|mps|cuda(:\d+)?", v) is not None,
               "'cpu', 'cuda', 'cuda:N' or 'mps'"),
}


def _check_combinations(values, parser):
    """Settings that depend on each other (most on NUM_CLASSES) agree."""
    classes = values["NUM_CLASSES"]
    try:
        palette = parse_palette(values["CLASS_COLORS"])
    except ValueError as error:
        parser.error(f"CLASS_COLORS (--class-colors): {error}; write one R,G,B per class, "
                     f"background first, e.g. '0,0,0;255,0,0;0,0,255'")
    if palette and len(palette) != classes:
        parser.error(f"CLASS_COLORS names {len(palette)} colours but NUM_CLASSES is {classes}: "
                     f"give one colour per class, background first")
    for name in ("LOSS", "FINAL_LOSS"):
        if classes > 1 and not is_valid_name(values[name], classes):
            parser.error(f"{name} {values[name]!r} is not for {classes} classes: use 'bce' "
                         f"(softmax cross-entropy), 'dice', 'lovasz' or a sum of them")
    if classes > 1 and values["IMAGE_GATE"]:
        parser.error("IMAGE_GATE gates one class (salt or not): give --image-gate false "
                     "for several classes")
    if values["RESIDUAL_BLOCKS"] and values["MODEL_VARIANT"] == "tutorial":
        parser.error("RESIDUAL_BLOCKS adds each block's input to its output, which the "
                     "tutorial variant's unpadded convolutions shrink: give "
                     "--model-variant aligned or --residual-blocks false")
    if values["DEEP_SUPERVISION"] and not values["IMAGE_GATE"]:
        parser.error("DEEP_SUPERVISION trains the image gate's two heads apart: give "
                     "--image-gate true with it")
    if values["SWA_SHARE"] and values["EMA_DECAY"]:
        parser.error("EMA_DECAY and SWA_SHARE are two ways of averaging the weights: give "
                     "--ema-decay 0 or --swa-share 0")
    if classes > 1 and values["TUNE_THRESHOLD"]:
        parser.error("TUNE_THRESHOLD chooses a salt threshold, which several classes do not "
                     "have: give --tune-threshold false")


def config_defaults():
    """The constants of config.py as a dict, name -> value."""
    return {name: value for name, value in vars(config).items()
            if name.isupper() and name not in _NOT_SETTINGS}


def flag_name(name):
    return "--" + name.lower().replace("_", "-")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each flag's default, except None: the setting flags default to
    None, meaning "not given", and state config.py's value in their help."""

    def _get_help_string(self, action):
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


def describe_settings(settings):
    """``{"BASE_FILTERS": 8}`` as "base-filters 8", the way the flags read."""
    return ", ".join(f"{flag_name(name)[2:]} {value}" for name, value in settings.items())


def build_parser(description):
    """A parser holding one flag per config constant; scripts add their own."""
    parser = argparse.ArgumentParser(
        description=description,
        formatter_class=_HelpFormatter)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="start from a named set of settings instead of config.py's "
                             "defaults (flags given as well still win): " + "; ".join(
                                 f"'{name}', {DESCRIPTIONS[name]}: {describe_settings(settings)}"
                                 for name, settings in PRESETS.items()))
    group = parser.add_argument_group(
        "settings", "override a constant of pyimagesearch/config.py for this run")
    for name, default in config_defaults().items():
        kind = _parse_bool if isinstance(default, bool) else type(default)
        group.add_argument(flag_name(name), dest=name, type=kind, default=None,
                           metavar=name, help=f"default: {default}")
    return parser


def _is_path(value):
    # config.py's paths are absolute; its other strings are names and lists
    return isinstance(value, str) and os.path.isabs(value)


def _is_inside(path, folder):
    path, folder = os.path.abspath(path), os.path.abspath(folder)
    return path != folder and os.path.commonpath([path, folder]) == folder


def settings_from_args(args, parser):
    """Apply the preset and the flags given in ``args`` to the config defaults.

    A path constant that lies under another one in config.py follows that one
    when only the outer one was given (the deepest given folder wins).
    """
    defaults = config_defaults()
    given = {name: getattr(args, name) for name in defaults
             if getattr(args, name, None) is not None}
    preset = getattr(args, "preset", None)
    chosen, adapted = preset_settings(preset, given.get("DEVICE", defaults["DEVICE"]))
    values = {**defaults, **chosen, **given}
    for name, default in defaults.items():
        if name in given or not _is_path(default):
            continue
        outer = [g for g in given if _is_path(defaults[g])
                 and _is_inside(default, defaults[g])]
        if outer:
            deepest = max(outer, key=lambda g: len(os.path.abspath(defaults[g])))
            relative = os.path.relpath(default, defaults[deepest])
            values[name] = os.path.join(values[deepest], relative)
    if "DEVICE" in given and "PIN_MEMORY" not in given:
        values["PIN_MEMORY"] = values["DEVICE"].startswith("cuda")
    for name, (test, expected) in _CHECKS.items():
        if not test(values[name]):
            parser.error(f"{name} ({flag_name(name)}) is {values[name]!r}: "
                         f"it must be {expected}")
    _check_combinations(values, parser)
    settings = types.SimpleNamespace(**values)
    settings.GIVEN = frozenset(given)
    settings.PRESET = preset
    # what the preset changed for this machine and the command line left alone
    settings.ADAPTED = {name: value for name, value in adapted.items() if name not in given}
    return settings


def parse_settings(argv=None, description=None):
    """Settings for a run from command-line flags alone (no script flags)."""
    parser = build_parser(description)
    return settings_from_args(parser.parse_args(argv), parser)
