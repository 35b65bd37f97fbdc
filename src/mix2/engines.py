"""Inference engines: the trained network run by PyTorch, ONNX Runtime or OpenVINO behind one call.

An engine takes the network's input ``(batch, 1, mels, frames)`` (float32, on the CPU for the
exported engines) and returns its logits ``(batch, classes)`` as a float32 tensor on the CPU.
All run the same weights with batch norm folded into the convolutions
(:class:`~mix2.inference.InferenceModel`), in fp32, and agree up to float rounding (logits
within 1e-4 of their scale, tested on real recordings):

- ``torch``: PyTorch itself, on the CPU or a GPU; the fallback, always there;
- ``onnxruntime``: the network exported to ONNX (``torch.onnx.export``), run by ONNX Runtime's
  CPU provider (``pip install onnxruntime``);
- ``openvino``: the same ONNX file compiled by OpenVINO for the CPU, with fp32 inference asked
  for explicitly, since OpenVINO would otherwise run bf16 on CPUs that have it
  (``pip install openvino``).

``auto`` takes ONNX Runtime, then OpenVINO, then PyTorch: the first installed (:data:`PREFERENCE`). An engine asked
for but not installed falls back to PyTorch with one line of warning, never a traceback. The
exported network is cached beside the checkpoint (:func:`exported_onnx`), named by a digest of
its weights and the exporter's version, so a second run starts at once and a retrained
checkpoint is never run with an old export. Engines
use as many threads as PyTorch does (``torch.get_num_threads()``, i.e. ``OMP_NUM_THREADS``).

Example:
    >>> trained = load_trained_model("runs/nips4b/checkpoints/best.ckpt")  # doctest: +SKIP
    >>> engine = load_engine(trained, "runs/nips4b/checkpoints/best.ckpt", "auto")  # doctest: +SKIP
    >>> engine.name, engine(torch.rand(8, 1, 128, 376)).shape  # doctest: +SKIP
    ('onnxruntime', torch.Size([8, 87]))
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from mix2.errors import Mix2Error
from mix2.files import cache_root, own_partial
from mix2.inference import InferenceModel, TrainedModel, input_shape
from mix2.registry import ENGINES

LOG = logging.getLogger("mix2")
PREFERENCE = ("onnxruntime", "openvino", "torch")
"""What ``auto`` takes: the first of these that is installed. ONNX Runtime first: on this project's
2-core AMD EPYC machine it ran the network at 5.27x PyTorch's default path against OpenVINO's
4.88x (``benchmarks/speed.py``, one run), and starts faster; OpenVINO was the faster one in a
rougher check on an Intel machine, so measure yours and pass ``--engine``."""
PACKAGES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
"""The package each exported engine needs."""
INFERENCE_PRECISIONS = ("fp32", "bf16")
"""The precisions inference runs the network in: bf16 under PyTorch's autocast only."""


class Engine(Protocol):
    """The network's input ``(batch, 1, mels, frames)`` -> logits ``(batch, classes)``, float32 on the CPU."""

    name: str

    def __call__(self, features: torch.Tensor) -> torch.Tensor: ...


def installed(name: str) -> bool:
    """Whether engine ``name`` can run here (PyTorch always can)."""
    return name not in PACKAGES or importlib.util.find_spec(PACKAGES[name]) is not None


def engine_names() -> list[str]:
    """``auto`` and every registered engine."""
    return ["auto", *ENGINES.names()]


def resolve_engine(name: str, device: torch.device, precision: str = "fp32") -> str:
    """The engine that will run: ``name``, or what ``auto`` takes, or ``torch`` where ``name`` cannot run here.

    The exported engines run fp32 on the CPU; on a GPU, or in bf16, ``auto`` takes PyTorch. A
    named engine that is not installed, or cannot run on the device or in the precision, falls
    back to PyTorch with one line of warning.
    """
    if name not in engine_names():
        raise Mix2Error(f"unknown inference engine '{name}'; choose one of: {', '.join(engine_names())}")
    if precision not in INFERENCE_PRECISIONS:
        raise Mix2Error(f"unknown precision '{precision}'; choose one of: {', '.join(INFERENCE_PRECISIONS)}")
    exported_can_run = device.type == "cpu" and precision == "fp32"
    if name == "auto":
        return next(n for n in PREFERENCE if installed(n)) if exported_can_run else "torch"
    if name == "torch":
        return name
    if not exported_can_run:
        LOG.warning(f"mix2: the {name} engine runs fp32 on the CPU only; scoring with torch ({precision} on the {device.type})")
        return "torch"
    if not installed(name):
        LOG.warning(f"mix2: the {name} engine is not installed (pip install {PACKAGES[name]}); scoring with torch instead")
        return "torch"
    return name


def load_engine(
    trained: TrainedModel,
    checkpoint: str | Path,
    name: str = "auto",
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> Engine:
    """The trained network behind engine ``name`` (resolved by :func:`resolve_engine`), exported once per checkpoint."""
    device = torch.device(device)
    resolved = resolve_engine(name, device, precision)
    return ENGINES.create(resolved, trained=trained, checkpoint=Path(checkpoint), device=device, precision=precision)


class TorchEngine:
    """PyTorch itself, on ``device``: in fp32 with batch norm folded, or in bf16 under autocast with it apart."""

    name = "torch"

    def __init__(self, trained: TrainedModel, device: torch.device, precision: str = "fp32") -> None:
        self.model = InferenceModel(trained, fold=precision == "fp32").to(device)
        self.device, self.bf16 = device, precision == "bf16"

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(features.to(self.device)).float().cpu()


class OnnxRuntimeEngine:
    """The network exported to ONNX, run by ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def __init__(self, trained: TrainedModel, checkpoint: Path) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        path = str(exported_onnx(trained, checkpoint))
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"features": _contiguous(features)})
        return torch.from_numpy(logits)


class OpenVinoEngine:
    """The network exported to ONNX, compiled by OpenVINO for the CPU in fp32, all threads on each call."""

    name = "openvino"

    def __init__(self, trained: TrainedModel, checkpoint: Path) -> None:
        import openvino

        settings = {
            "INFERENCE_PRECISION_HINT": "f32",  # not bf16, which OpenVINO takes by itself on CPUs that have it
            "INFERENCE_NUM_THREADS": torch.get_num_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        self.model = openvino.Core().compile_model(str(exported_onnx(trained, checkpoint)), "CPU", settings)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.model(_contiguous(features))[0]))


@ENGINES.register("torch")
def torch_engine(trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str) -> TorchEngine:
    return TorchEngine(trained, device, precision)


@ENGINES.register("onnxruntime")
def onnxruntime_engine(trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(trained, checkpoint)


@ENGINES.register("openvino")
def openvino_engine(trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str) -> OpenVinoEngine:
    return OpenVinoEngine(trained, checkpoint)


def exported_onnx(trained: TrainedModel, checkpoint: Path) -> Path:
    """The network of ``checkpoint`` in ONNX, exported once and cached, with a dynamic batch axis.

    Named ``<checkpoint stem>.<network digest>.onnx``, the digest of the network's name, input
    shape and weights and of the exporting PyTorch's version (:func:`network_digest`), so that a
    retrained checkpoint or another PyTorch exports again, while thresholds stored into the
    checkpoint later do not; an earlier export for the same checkpoint name is removed. Beside
    the checkpoint, or in ``$MIX2_CACHE_DIR/engines`` where its folder cannot be written.
    Exported with PyTorch's TorchScript exporter (``dynamo=False``), which exports this network
    exactly in two seconds, without the extra packages of the newer one.
    """
    folder = checkpoint.parent if os.access(checkpoint.parent, os.W_OK) else cache_root() / "engines"
    path = folder / f"{checkpoint.stem}.{network_digest(trained)}.onnx"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, *input_shape(trained.config))
    # A partial file of its own per process: the shards of an array job may export at once.
    with own_partial(path, durable=True) as partial, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notice that a newer one exists
        torch.onnx.export(
            InferenceModel(trained).model,  # batch norm folded
            (example,),
            str(partial),
            dynamo=False,
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
        )
    export_name = re.compile(rf"{re.escape(checkpoint.stem)}\.[0-9a-f]{{16}}\.onnx")
    for earlier in folder.iterdir():
        if earlier != path and export_name.fullmatch(earlier.name):
            earlier.unlink(missing_ok=True)
    return path


def network_digest(trained: TrainedModel) -> str:
    """16 hex digits that change with the network's name, input shape or any weight, or with PyTorch's version."""
    config = trained.config
    digest = hashlib.sha1(f"{config.train.model} {input_shape(config)} {torch.__version__}".encode())
    for name, tensor in trained.network.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def _contiguous(features: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(features.detach().cpu().numpy(), dtype=np.float32)
