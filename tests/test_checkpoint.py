import pickle

import pytest
import torch

from pyimagesearch.checkpoint import CheckpointError, load_model, save_model
from pyimagesearch.model import UNet, unet_arguments


@pytest.mark.parametrize("variant, levels, channels, classes", [
    ("aligned", 3, 1, 1), ("tutorial", 2, 3, 1), ("aligned", 4, 3, 2)])
def test_round_trip_rebuilds_the_same_network(tmp_path, variant, levels, channels, classes):
    # the file's own description decides the network, whatever config.py says now
    torch.manual_seed(0)
    arguments = unet_arguments(channels, classes, levels, 8, (64, 64), variant)
    model = UNet(**arguments).eval()
    path = tmp_path / "model.pth"
    save_model(path, model, arguments, epoch=3, metrics={"score": 0.5})

    # the file must load with weights_only=True: no pickled code inside
    payload = torch.load(path, weights_only=True)
    assert payload["arguments"] == arguments

    loaded, loaded_arguments, metadata = load_model(path)
    assert loaded_arguments == arguments
    assert metadata == {"epoch": 3, "metrics": {"score": 0.5}}
    x = torch.rand(2, channels, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_a_pickled_whole_model_is_refused_not_run(tmp_path):
    path = tmp_path / "tutorial_style.pth"
    torch.save(UNet(), path)  # what the tutorial does
    with pytest.raises(CheckpointError, match="pickled"):
        load_model(path)


def test_a_malicious_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump(Exploit(), handle, protocol=2)
    with pytest.raises(CheckpointError):
        load_model(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a model at all"])
def test_non_model_files_are_refused(tmp_path, content):
    path = tmp_path / "junk.pth"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_model(path)


def test_a_plain_state_dict_is_refused_with_an_explanation(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(UNet().state_dict(), path)
    with pytest.raises(CheckpointError, match="not a model file of this project"):
        load_model(path)


def test_missing_model_file_says_to_train_first(tmp_path):
    with pytest.raises(CheckpointError, match="train"):
        load_model(tmp_path / "absent.pth")
