"""Model files: a state_dict plus what is needed to rebuild the network.

They are loaded with ``weights_only=True``, which unpickles tensors and plain
containers only: a file from an untrusted source cannot run code, and the
tutorial's pickled whole-module files (which PyTorch >= 2.6 refuses by
default anyway) are explained rather than executed.
"""
import os
import pickle
import zipfile

import torch

from pyimagesearch.files import atomic_path
from pyimagesearch.model import UNet

FORMAT = "pyimagesearch-unet"
TRAINING_FORMAT = "pyimagesearch-training-state"
VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a model file of this project, or cannot be read."""


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
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer version of this project "
                              f"(file version {payload['version']}, this one reads "
                              f"up to {VERSION})")
    return payload


def read_model_file(path):
    """The raw content of a model file, after checking that it is one."""
    if not os.path.exists(path):
        raise CheckpointError(f"no model file at {path}; train one first with "
                              f"`python train.py` (or give --model-path)")
    return _load_checked(path, FORMAT, "model file")


def load_model(path, device="cpu"):
    """(model, arguments, metadata); the network is rebuilt from the file's own
    arguments, so a file trained with other settings loads as it was trained."""
    payload = read_model_file(path)
    model = UNet(**payload["arguments"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"the weights in {path} do not fit the network its "
                              f"settings describe: {str(error).splitlines()[0]}") from None
    return model.to(device).eval(), payload["arguments"], payload["metadata"]


def save_training_state(path, *, model, optimizer, arguments, epoch, history, best_score,
                        loader_generator, scaler=None, scheduler=None, average=None,
                        planned_epochs=None):
    """Everything needed to continue training after ``epoch`` as if never stopped."""
    model = getattr(model, "module", model)
    state = {"format": TRAINING_FORMAT, "version": VERSION, "arguments": arguments,
             "epoch": epoch, "history": history, "best_score": best_score,
             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
             "scaler": scaler.state_dict() if scaler is not None else None,
             "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "average": average.state_dict() if average is not None else None,
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
    differences = [f"{key} {state['arguments'].get(key)} in the checkpoint, {value} now"
                   for key, value in arguments.items() if state["arguments"].get(key) != value]
    if differences:
        raise CheckpointError(f"{path} was trained with another network: "
                              f"{'; '.join(differences)}; resume with the same settings "
                              f"or start afresh without --resume")
    return state


def restore_rng(state, loader_generator):
    torch.set_rng_state(state["torch_rng"])
    if state["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda_rng"])
    loader_generator.set_state(state["loader_rng"])
