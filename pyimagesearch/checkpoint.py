"""Model files: a state_dict plus what is needed to rebuild the network.

They are loaded with ``weights_only=True``, which unpickles tensors and plain
containers only: a file from an untrusted source cannot run code, and the
tutorial's pickled whole-module files (which PyTorch >= 2.6 refuses by
default anyway) are explained rather than executed.
"""
import inspect
import math
import os
import pickle
import zipfile

import torch

from pyimagesearch.files import atomic_path
from pyimagesearch.model import VARIANTS, Ensemble, UNet

FORMAT = "pyimagesearch-unet"
TRAINING_FORMAT = "pyimagesearch-training-state"
VERSION = 1


# a file's network is checked against these before it is built; generous
# bounds, far above any U-Net that trains on one machine
MAX_WIDTH = 4096
MAX_LEVELS = 10
MAX_SIDE = 16384


class CheckpointError(ValueError):
    """A file that is not a model file of this project, or cannot be read."""


def _is_count(value, low, high):
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _are_counts(value, low, high, lengths):
    return (isinstance(value, (list, tuple)) and len(value) in lengths
            and all(_is_count(item, low, high) for item in value))


_SIGNATURE = inspect.signature(UNet.__init__).parameters
UNET_PARAMETERS = tuple(_SIGNATURE)[1:]
# arguments that model files written before they existed lack; such files
# hold networks built without them, as UNet's defaults say
ADDED_LATER = {name: _SIGNATURE[name].default
               for name in ("attention", "hypercolumn", "imageGate", "residual", "dropout")}

# UNet constructor argument -> (test, what the stored value must be)
ARGUMENT_CHECKS = {
    "encChannels": (lambda v: _are_counts(v, 1, MAX_WIDTH, range(2, MAX_LEVELS + 2)),
                    f"2 to {MAX_LEVELS + 1} channel counts, each 1 to {MAX_WIDTH}"),
    "decChannels": (lambda v: _are_counts(v, 1, MAX_WIDTH, range(1, MAX_LEVELS + 1)),
                    f"1 to {MAX_LEVELS} channel counts, each 1 to {MAX_WIDTH}"),
    "nbClasses": (lambda v: _is_count(v, 1, MAX_WIDTH), f"a count from 1 to {MAX_WIDTH}"),
    "outSize": (lambda v: _are_counts(v, 1, MAX_SIDE, (2,)),
                f"a (height, width) pair, each 1 to {MAX_SIDE}"),
    "variant": (lambda v: v in VARIANTS, f"one of {VARIANTS}"),
    # every switch of the constructor (those whose default is true or false)
    **{flag: (lambda v: isinstance(v, bool), "true or false")
       for flag in UNET_PARAMETERS if isinstance(_SIGNATURE[flag].default, bool)},
    "dropout": (lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v < 1,
                "a chance from 0 to below 1"),
}


def check_arguments(arguments, path):
    """Refuse stored constructor arguments that UNet would not take or that
    ask for an absurd network, before anything is built from them."""
    if not isinstance(arguments, dict):
        raise CheckpointError(f"{path} holds no network description (its 'arguments' "
                              f"are {type(arguments).__name__}, not a dict)")
    for name, default in ADDED_LATER.items():
        arguments.setdefault(name, default)
    missing = [name for name in UNET_PARAMETERS if name not in arguments]
    unknown = [name for name in arguments if name not in UNET_PARAMETERS]
    if missing or unknown:
        raise CheckpointError(f"{path} describes its network with "
                              + "; ".join(f"{kind} arguments: {', '.join(map(str, names))}"
                                          for kind, names in (("missing", missing),
                                                              ("unknown", unknown)) if names))
    for name, (test, expected) in ARGUMENT_CHECKS.items():
        if not test(arguments[name]):
            raise CheckpointError(f"{path} stores {name} = {arguments[name]!r}, which is "
                                  f"not {expected}")


def save_model(path, model, arguments, **metadata):
    """Save ``model`` (built with ``UNet(**arguments)``) and JSON-like metadata."""
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {name: tensor.detach().cpu().contiguous()
             for name, tensor in model.state_dict().items()}
    payload = {"format": FORMAT, "version": VERSION, "arguments": arguments,
               "state_dict": state, "metadata": metadata}
    with atomic_path(path, durable=True) as temporary:
        torch.save(payload, temporary)


def _load_checked(path, expected_format, what):
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path} holds pickled Python objects (for example a whole model saved "
            f"with torch.save(model), as the tutorial does), which are not loaded "
            f"because unpickling can run arbitrary code; retrain with this project, "
            f"which saves weights and settings only") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path} is not a readable PyTorch file ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != expected_format:
        raise CheckpointError(f"{path} is a PyTorch file but not a {what} of "
                              f"this project (no '{expected_format}' format marker)")
    version = payload.get("version", 0)
    if _is_count(version, VERSION + 1, math.inf):
        raise CheckpointError(f"{path} was written by a newer version of this project "
                              f"(file version {version}, this one reads up to {VERSION})")
    if not _is_count(version, 0, VERSION):
        raise CheckpointError(f"{path} has the file version {version!r}, not a number "
                              f"from 0 to {VERSION}")
    return payload


def read_model_file(path):
    """The raw content of a model file, after checking that it is one."""
    if not os.path.exists(path):
        raise CheckpointError(f"no model file at {path}; train one first with "
                              f"`python train.py` (or give --model-path)")
    payload = _load_checked(path, FORMAT, "model file")
    check_arguments(payload.get("arguments"), path)
    state_dict = payload.get("state_dict")
    if not (isinstance(state_dict, dict)
            and all(isinstance(value, torch.Tensor) for value in state_dict.values())):
        raise CheckpointError(f"{path} holds no weights (its 'state_dict' is not a "
                              f"dict of tensors)")
    if not isinstance(payload.get("metadata", {}), dict):
        raise CheckpointError(f"{path} has metadata that is not a dict")
    return payload


def load_model(path, device="cpu"):
    """(model, arguments, metadata); the network is rebuilt from the file's own
    arguments, so a file trained with other settings loads as it was trained.

    The network is laid out on the "meta" device, which allocates nothing, and
    takes the file's tensors as its weights: a file whose arguments ask for a
    far larger network than its weights fill is refused without building it.
    """
    payload = read_model_file(path)
    try:
        with torch.device("meta"):
            model = UNet(**payload["arguments"])
        model.load_state_dict(payload["state_dict"], assign=True)
    except (RuntimeError, ValueError) as error:
        raise CheckpointError(f"the weights in {path} do not fit the network its "
                              f"settings describe: {str(error).splitlines()[0]}") from None
    model = model.float().to(device).eval()
    return model, payload["arguments"], payload.get("metadata", {})


def _interface(arguments):
    """What an ensemble's members must share: the input they take and the
    output they give."""
    return {"input channels": arguments["encChannels"][0], "classes": arguments["nbClasses"],
            "input size": list(arguments["outSize"])}


def load_for_prediction(path, device="cpu"):
    """``load_model`` for one model file; for a folder, every ``.pth`` file in
    it as one ``Ensemble`` that averages their probabilities, with the
    arguments and metadata (prediction rules) of the first by name."""
    if not os.path.isdir(path):
        return load_model(path, device)
    files = sorted(os.path.join(path, name) for name in os.listdir(path)
                   if name.endswith(".pth"))
    if not files:
        raise CheckpointError(f"no model files (.pth) in the folder {path}")
    try:
        loaded = [load_model(file, device) for file in files]
    except CheckpointError as error:
        raise CheckpointError(f"{error}; a folder given as the model path is an ensemble of "
                              f"every .pth file in it and must hold model files only") from None
    expected = _interface(loaded[0][1])
    for file, (_, arguments, _) in zip(files[1:], loaded[1:]):
        for what, value in _interface(arguments).items():
            if value != expected[what]:
                raise CheckpointError(
                    f"the models in {path} differ in their {what}: {files[0]} has "
                    f"{expected[what]}, {file} has {value}; the members of an ensemble "
                    f"take the same input and give the same output")
    _, arguments, metadata = loaded[0]
    return Ensemble([model for model, _, _ in loaded]).eval(), arguments, metadata


# what --resume reads from a training checkpoint
_TRAINING_KEYS = ("epoch", "history", "best_score", "model", "optimizer", "scaler",
                  "torch_rng", "cuda_rng", "loader_rng")


def save_training_state(path, *, model, optimizer, arguments, epoch, history, best_score,
                        loader_generator, scaler=None, scheduler=None, average=None,
                        average_kind=None, planned_epochs=None):
    """Everything needed to continue training after ``epoch`` as if never stopped."""
    model = getattr(model, "module", model)
    state = {"format": TRAINING_FORMAT, "version": VERSION, "arguments": arguments,
             "epoch": epoch, "history": history, "best_score": best_score,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None,
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "average": average.state_dict() if average is not None else None,
             "average_kind": average_kind,
             "planned_epochs": planned_epochs, "torch_rng": torch.get_rng_state(),
             "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
             "loader_rng": loader_generator.get_state()}
    with atomic_path(path, durable=True) as temporary:
        torch.save(state, temporary)


def load_training_state(path, arguments):
    """The state saved by ``save_training_state``, checked against this run's network."""
    if not os.path.exists(path):
        raise CheckpointError(f"nothing to resume: no checkpoint at {path} (it is written "
                              f"after every epoch; check --base-output)")
    state = _load_checked(path, TRAINING_FORMAT, "training checkpoint")
    check_arguments(state.get("arguments"), path)
    missing = [key for key in _TRAINING_KEYS if key not in state]
    if missing:
        raise CheckpointError(f"{path} lacks parts of a training checkpoint: "
                              f"{', '.join(missing)}; start afresh without --resume")
    differences = [f"{key} {state['arguments'].get(key)} in the checkpoint, {value} now"
                   for key, value in arguments.items() if state["arguments"].get(key) != value]
    if differences:
        raise CheckpointError(f"{path} was trained with another network: "
                              f"{'; '.join(differences)}; resume with the same settings "
                              f"or start afresh without --resume")
    return state


def restore_rng(state, loader_generator):
    """Put the random generators back as they were when ``state`` was saved.

    A run resumed on a machine with fewer GPUs than it started on restores the
    generators of the GPUs it has; the others are not there to be restored.
    """
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        for index, cuda_state in enumerate(state["cuda_rng"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(cuda_state, index)
    loader_generator.set_state(state["loader_rng"])
