import pickle
import resource

import pytest
import torch

from pyimagesearch.checkpoint import (ARGUMENT_CHECKS, UNET_PARAMETERS, CheckpointError,
                                      load_for_prediction, load_model, restore_rng,
                                      save_model, save_training_state)
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


def test_options_round_trip_and_older_files_load_without_them(tmp_path):
    torch.manual_seed(0)
    options = unet_arguments(1, 1, 3, 8, (48, 48), batch_norm=True, attention=True,
                             hypercolumn=True, image_gate=True, residual=True, dropout=0.3)
    model = UNet(**options).eval()
    save_model(tmp_path / "new.pth", model, options)
    loaded, arguments, _ = load_model(tmp_path / "new.pth")
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    # a file written before the options existed describes a network without
    # them, under the weight names such files have
    assert "decoder.dec_blocks.0.conv1.weight" in UNet(**unet_arguments()).state_dict()
    plain = unet_arguments(1, 1, 3, 8, (48, 48))
    older = {name: value for name, value in plain.items()
             if name not in ("attention", "hypercolumn", "imageGate", "residual", "dropout")}
    save_model(tmp_path / "old.pth", UNet(**plain), older)
    _, arguments, _ = load_model(tmp_path / "old.pth")
    assert arguments == plain


def test_a_narrower_decoder_round_trips(tmp_path):
    # predict.py rebuilds the network from the file alone: the decoder's own
    # widths must come back, whatever DECODER_WIDTH config.py says now
    torch.manual_seed(0)
    arguments = unet_arguments(1, 1, 4, 8, (40, 40), batch_norm=True, hypercolumn=True,
                               residual=True, decoder_width=0.5)
    model = UNet(**arguments).eval()
    save_model(tmp_path / "narrow.pth", model, arguments)
    loaded, loaded_arguments, _ = load_model(tmp_path / "narrow.pth")
    assert loaded_arguments["decChannels"] == [64, 16, 8, 4]
    x = torch.rand(2, 1, 40, 40)
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


def _saved(tmp_path, change):
    """A model file whose payload ``change`` has altered."""
    arguments = unet_arguments(num_levels=2, base_filters=4, size=(16, 16))
    path = tmp_path / "model.pth"
    save_model(path, UNet(**arguments), arguments, epoch=1)
    payload = torch.load(path, weights_only=True)
    change(payload)
    torch.save(payload, path)
    return path


@pytest.mark.parametrize("change, message", [
    (lambda p: p["arguments"].pop("outSize"), "missing arguments: outSize"),
    (lambda p: p["arguments"].update(colour="red"), "unknown arguments: colour"),
    (lambda p: p["arguments"].update(encChannels=["1", "4", "8"]), "encChannels"),
    (lambda p: p["arguments"].update(batchNorm="yes"), "batchNorm"),
    (lambda p: p["arguments"].update(dropout=1.0), "dropout"),
    (lambda p: p.update(arguments=[1, 2]), "no network description"),
    (lambda p: p.update(version="1"), "file version '1'"),
    (lambda p: p.update(version=7), "newer version"),
    (lambda p: p.pop("state_dict"), "holds no weights"),
    (lambda p: p["state_dict"].update({"head.weight": torch.zeros(1, 1, 1, 1)}), "do not fit"),
])
def test_a_malformed_model_file_is_a_clear_error(tmp_path, change, message):
    with pytest.raises(CheckpointError, match=message):
        load_model(_saved(tmp_path, change))


def test_absurd_widths_are_refused_before_anything_is_built(tmp_path):
    # a network this wide would need terabytes
    def widen(payload):
        payload["arguments"].update(encChannels=[1, 10 ** 6, 2 * 10 ** 6],
                                    decChannels=[2 * 10 ** 6, 10 ** 6])
    with pytest.raises(CheckpointError, match="encChannels"):
        load_model(_saved(tmp_path, widen))


def test_widths_larger_than_the_weights_are_refused_without_building(tmp_path):
    # within the bounds, but 4096 channels at two levels would take 600 MB
    # to build: the weights in the file decide before anything is allocated
    def widen(payload):
        payload["arguments"].update(encChannels=[1, 4096, 4096], decChannels=[4096, 4096])
    started = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(_saved(tmp_path, widen))
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - started) / 1024
    assert grown_mb < 200


def test_every_unet_argument_is_checked():
    assert set(ARGUMENT_CHECKS) == set(UNET_PARAMETERS)


def test_resuming_with_fewer_gpus_restores_those_there_are(monkeypatch):
    # a checkpoint written on 2 GPUs, resumed on a machine with 1
    restored = []

    def set_rng_state(state, device="cuda"):
        if device not in (0, "cuda", torch.device("cuda", 0)):
            raise IndexError("list index out of range")
        restored.append(device)

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda.random, "set_rng_state", set_rng_state)
    generator = torch.Generator()
    state = {"torch_rng": torch.get_rng_state(), "loader_rng": generator.get_state(),
             "cuda_rng": [torch.zeros(16, dtype=torch.uint8)] * 2}
    restore_rng(state, generator)
    assert len(restored) == 1


def _save_small(path, size=(32, 32), seed=0, levels=2):
    torch.manual_seed(seed)
    arguments = unet_arguments(1, 1, levels, 4, size)
    save_model(path, UNet(**arguments), arguments, prediction={"threshold": 0.3 + seed / 10})
    return arguments


def test_a_folder_of_model_files_predicts_their_mean_probability(tmp_path):
    # members may differ inside (depth here), as long as they take and give the same
    _save_small(tmp_path / "b.pth", seed=1, levels=3)
    arguments = _save_small(tmp_path / "a.pth", seed=2)
    (tmp_path / "notes.txt").write_text("not a model")
    ensemble, loaded_arguments, metadata = load_for_prediction(str(tmp_path))
    # the first file by name gives the arguments and the prediction rules
    assert loaded_arguments == arguments and metadata["prediction"]["threshold"] == 0.5
    members = [load_model(tmp_path / name)[0] for name in ("a.pth", "b.pth")]
    x = torch.rand(3, 1, 32, 32)
    with torch.no_grad():
        mean = (torch.sigmoid(members[0](x)) + torch.sigmoid(members[1](x))) / 2
        assert torch.allclose(torch.sigmoid(ensemble(x)), mean, atol=1e-6)


def test_an_ensemble_of_models_for_other_inputs_is_refused(tmp_path):
    _save_small(tmp_path / "a.pth")
    _save_small(tmp_path / "b.pth", size=(64, 64))
    with pytest.raises(CheckpointError, match="input size"):
        load_for_prediction(str(tmp_path))


def test_a_folder_without_model_files_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="no model files"):
        load_for_prediction(str(tmp_path))
    arguments = _save_small(tmp_path / "a.pth")
    model = UNet(**arguments)
    save_training_state(tmp_path / "checkpoint.pth", model=model, arguments=arguments,
                        optimizer=torch.optim.SGD(model.parameters(), 0.1), epoch=1,
                        history=[], best_score=0.0, loader_generator=torch.Generator())
    expected = "checkpoint.pth .*not a model file.*model files only"
    with pytest.raises(CheckpointError, match=expected):
        load_for_prediction(str(tmp_path))
