"""The trained network as an ONNX file, to run outside Python's PyTorch
(onnxruntime, TensorRT, OpenVINO, a browser).

The exporter needs the optional packages onnx and onnxscript, the check
onnxruntime; the training and prediction install needs none of them.
"""
import importlib.util

import numpy as np
import torch

from pyimagesearch.files import atomic_path

EXPORT_PACKAGES = ("onnx", "onnxscript")
INPUT_NAME, OUTPUT_NAME = "images", "logits"


class ExportError(RuntimeError):
    """The model cannot be exported here; the message says what to install."""


def _missing(packages):
    return [name for name in packages if importlib.util.find_spec(name) is None]


def export_onnx(model, arguments, path):
    """Write ``model`` (built with ``UNet(**arguments)``) to ``path`` as ONNX.

    Its input is a float batch (N, C, H, W) of images in [0, 1] at the
    network's own size ``arguments["outSize"]``, N free; its output the
    logits (N, 1, H, W) for the same pixels.
    """
    missing = _missing(EXPORT_PACKAGES)
    if missing:
        raise ExportError(f"ONNX export needs the packages {' and '.join(missing)}: "
                          f"pip install onnx onnxscript onnxruntime (onnxruntime to check "
                          f"the file against PyTorch)")
    model = model.float().cpu().eval()
    height, width = arguments["outSize"]
    example = torch.rand(2, arguments["encChannels"][0], height, width)
    batch = torch.export.Dim("batch")
    with atomic_path(path) as temporary:
        torch.onnx.export(model, (example,), temporary, input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},),
                          dynamo=True, external_data=False, verbose=False)


def onnx_difference(path, model, images):
    """The largest absolute difference between the logits of the ONNX file
    and of ``model`` for ``images`` (a float batch), or None without onnxruntime."""
    if _missing(("onnxruntime",)):
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    exported = session.run(None, {INPUT_NAME: images.numpy().astype(np.float32)})[0]
    with torch.inference_mode():
        expected = model.float().cpu().eval()(images).numpy()
    return float(np.abs(exported - expected).max())
