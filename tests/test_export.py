"""ONNX export: a clear message without the optional packages, the same
logits as PyTorch with them."""
import pytest
import torch

from pyimagesearch import export
from pyimagesearch.model import Ensemble, UNet, unet_arguments


def test_without_the_packages_the_message_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setattr(export, "_missing", lambda packages: list(packages))
    arguments = unet_arguments(num_levels=2, base_filters=4, size=(16, 16))
    with pytest.raises(export.ExportError, match="pip install onnx onnxscript"):
        export.export_onnx(UNet(**arguments), arguments, str(tmp_path / "m.onnx"))
    assert not (tmp_path / "m.onnx").exists()


LEVERS = {"attention": True, "hypercolumn": True, "image_gate": True, "residual": True}


@pytest.mark.parametrize("variant, size, options", [
    ("aligned", (37, 29), {}), ("tutorial", (64, 64), {}), ("aligned", (37, 29), LEVERS)])
def test_the_onnx_file_computes_pytorchs_logits_for_any_batch(tmp_path, variant, size, options):
    for package in (*export.EXPORT_PACKAGES, "onnxruntime"):
        pytest.importorskip(package, reason=f"{package} is optional and not installed here")
    torch.manual_seed(0)
    arguments = unet_arguments(num_levels=3, base_filters=4, size=size, variant=variant,
                               batch_norm=True, **options)
    model = UNet(**arguments).eval()
    path = str(tmp_path / "m.onnx")
    export.export_onnx(model, arguments, path)
    # exported with a batch of 2; the batch dimension is free
    difference = export.onnx_difference(path, model, torch.rand(5, 1, *size))
    assert difference is not None and difference < 1e-4


def _sure_gated_network(seed, size):
    """A gated network whose logits lie in the negative hundreds, as a trained
    one's do on pixels it is sure hold no salt: its heads' weights scaled up."""
    torch.manual_seed(seed)
    arguments = unet_arguments(num_levels=3, base_filters=4, size=size, batch_norm=True,
                               **LEVERS)
    model = UNet(**arguments).eval()
    with torch.no_grad():
        for parameter in (*model.head.parameters(), *model.image_head.parameters()):
            parameter.mul_(3000)
    return model, arguments


@pytest.mark.parametrize("members", [1, 2])
def test_sure_logits_and_ensembles_export_finite_and_equal(tmp_path, members):
    for package in (*export.EXPORT_PACKAGES, "onnxruntime"):
        pytest.importorskip(package, reason=f"{package} is optional and not installed here")
    size = (37, 29)
    networks = [_sure_gated_network(seed, size) for seed in range(members)]
    model = networks[0][0] if members == 1 else Ensemble([net for net, _ in networks])
    images = torch.rand(4, 1, *size)
    with torch.no_grad():
        assert model(images).max() < -100
    path = str(tmp_path / "m.onnx")
    export.export_onnx(model, networks[0][1], path)
    # log(sigmoid) in the graph would give -inf (or float32's lowest) here
    difference = export.onnx_difference(path, model, images)
    assert difference is not None and difference < 1e-3
