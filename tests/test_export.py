"""ONNX export: a clear message without the optional packages, the same
logits as PyTorch with them."""
import pytest
import torch

from pyimagesearch import export
from pyimagesearch.model import UNet, unet_arguments


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
