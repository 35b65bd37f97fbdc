"""Inference engines: the trained network run by PyTorch, ONNX Runtime or OpenVINO behind one call.

An engine takes the network's input ``(batch, 1, mels, frames)`` (float32, on the CPU for the
exported engines) and returns its logits ``(batch, classes)`` as a float32 tensor on the CPU, or,
made with ``stop="embedding"`` (``mix2 embed``'s), the embedding its classifier reads ``(batch, 960)``.
All run the same weights with batch norm folded into the convolutions
(:class:`~mix2.inference.InferenceModel`), in fp32, and agree up to float rounding (logits
within 1e-4 of their scale, tested on real recordings):

- ``torch``: PyTorch itself, on the CPU or a GPU; the fallback, always there;
- ``onnxruntime``: the network exported to ONNX (``torch.onnx.export``), run by ONNX Runtime's
  CPU provider (``pip install onnxruntime``);
- ``openvino``: the same ONNX file compiled by OpenVINO for the CPU, with fp32 inference asked
  for explicitly, since OpenVINO would otherwise run bf16 on CPUs that have it
  (``pip install openvino``).

In reduced precision (``precision``): ``bf16`` runs under PyTorch's autocast with batch norm
apart (scores within 0.05 of fp32), or with ``openvino`` named, on OpenVINO's bf16 hint with
batch norm folded (faster; scores within 0.1); ``int8`` runs only on OpenVINO, and only a
network that ``mix2 quantize`` made and checked (:func:`int8_network`): quantised with NNCF,
calibrated on the run's validation clips, and found within 0.5 points of fp32's macro F1 and
mAP on its test clips.

In fp32 ``auto`` takes ONNX Runtime, then OpenVINO, then PyTorch: the first installed (:data:`PREFERENCE`). An engine asked
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
import json
import logging
import os
import re
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import nn

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
INFERENCE_PRECISIONS = ("fp32", "bf16", "int8")
"""The precisions inference runs the network in: bf16 under PyTorch's autocast or on OpenVINO, int8 on OpenVINO."""


class Engine(Protocol):
    """The network's input ``(batch, 1, mels, frames)`` -> logits ``(batch, classes)`` (or the embedding), float32 on the CPU."""

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

    The exported engines run on the CPU; ONNX Runtime in fp32 only, OpenVINO in fp32, bf16 or
    int8. On a GPU or in bf16 ``auto`` takes PyTorch (OpenVINO's bf16, with batch norm folded,
    moves scores further, so it is asked for by name); in int8, OpenVINO. A named engine that
    is not installed, or cannot run on the device or in the precision, falls back to PyTorch
    with one line of warning. int8 has no fallback: where
    OpenVINO cannot run it, that is a one-line :class:`~mix2.errors.Mix2Error`.
    """
    if name not in engine_names():
        raise Mix2Error(f"unknown inference engine '{name}'; choose one of: {', '.join(engine_names())}")
    if precision not in INFERENCE_PRECISIONS:
        raise Mix2Error(f"unknown precision '{precision}'; choose one of: {', '.join(INFERENCE_PRECISIONS)}")
    on_cpu = device.type == "cpu"
    if precision == "int8":
        if name not in ("auto", "openvino") or not on_cpu or not installed("openvino"):
            raise Mix2Error(
                f"int8 runs on the openvino engine on the CPU only (pip install openvino); got engine {name} on the {device.type}"
            )
        return "openvino"
    if name == "auto":
        return next(n for n in PREFERENCE if installed(n)) if on_cpu and precision == "fp32" else "torch"
    if name == "torch":
        return name
    if not on_cpu or (precision != "fp32" and name != "openvino"):
        LOG.warning(f"mix2: the {name} engine cannot run {precision} on the {device.type}; scoring with torch instead")
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
    stop: str = "logits",
) -> Engine:
    """The trained network behind engine ``name`` (resolved by :func:`resolve_engine`), exported once per checkpoint.

    ``stop``: ``"logits"``, or ``"embedding"`` for an engine that gives the network's embedding
    (in fp32 or bf16; int8 networks give logits only).
    """
    if stop not in ("logits", "embedding"):
        raise ValueError(f"an engine stops at 'logits' or 'embedding', got {stop!r}")
    if stop == "embedding" and precision == "int8":
        raise Mix2Error("int8 networks give logits only; embed in fp32 or bf16")
    device = torch.device(device)
    resolved = resolve_engine(name, device, precision)
    return ENGINES.create(resolved, trained=trained, checkpoint=Path(checkpoint), device=device, precision=precision, stop=stop)


class TorchEngine:
    """PyTorch itself, on ``device``: in fp32 with batch norm folded, or in bf16 under autocast with it apart.

    ``stop="embedding"`` returns the network's embedding ``(batch, 960)`` instead of its logits.
    """

    name = "torch"

    def __init__(self, trained: TrainedModel, device: torch.device, precision: str = "fp32", stop: str = "logits") -> None:
        self.model = InferenceModel(trained, fold=precision == "fp32").to(device)
        self.device, self.bf16, self.stop = device, precision == "bf16", stop

    @torch.inference_mode()
    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            return self.model(features.to(self.device), stop=self.stop).float().cpu()


class OnnxRuntimeEngine:
    """The network exported to ONNX (up to stage ``stop``), run by ONNX Runtime's CPU provider."""

    name = "onnxruntime"

    def __init__(self, trained: TrainedModel, checkpoint: Path, stop: str = "logits") -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.inter_op_num_threads = 1
        path = str(exported_onnx(trained, checkpoint, stop))
        self.session = onnxruntime.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        (outputs,) = self.session.run(None, {"features": _contiguous(features)})
        return torch.from_numpy(outputs)


class OpenVinoEngine:
    """A network file (ONNX, or OpenVINO's ``.xml``) compiled by OpenVINO for the CPU, all threads on each call.

    ``hint`` is OpenVINO's inference precision for the operations in floating point: ``"f32"``,
    ``"bf16"``, or ``None`` for OpenVINO's own choice (bf16 on CPUs that have it).
    """

    name = "openvino"

    def __init__(self, network_file: Path, hint: str | None) -> None:
        import openvino

        settings = {"INFERENCE_NUM_THREADS": torch.get_num_threads(), "PERFORMANCE_HINT": "LATENCY"}
        if hint is not None:
            settings["INFERENCE_PRECISION_HINT"] = hint
        self.model = openvino.Core().compile_model(str(network_file), "CPU", settings)

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(np.array(self.model(_contiguous(features))[0]))


@ENGINES.register("torch")
def torch_engine(trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str, stop: str) -> TorchEngine:
    return TorchEngine(trained, device, precision, stop)


@ENGINES.register("onnxruntime")
def onnxruntime_engine(
    trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str, stop: str
) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(trained, checkpoint, stop)


@ENGINES.register("openvino")
def openvino_engine(trained: TrainedModel, checkpoint: Path, device: torch.device, precision: str, stop: str) -> OpenVinoEngine:
    if precision == "int8":  # left in floating point: OpenVINO's choice, as when mix2 quantize checked it
        return OpenVinoEngine(int8_network(trained, checkpoint), hint=None)
    # f32 asked for explicitly: OpenVINO would otherwise take bf16 by itself on CPUs that have it
    return OpenVinoEngine(exported_onnx(trained, checkpoint, stop), hint={"fp32": "f32", "bf16": "bf16"}[precision])


class _UpTo(nn.Module):
    """A staged network run from its input up to stage ``stop``, as a module of one argument (for the exporter)."""

    def __init__(self, network: nn.Module, stop: str) -> None:
        super().__init__()
        self.network, self.stop = network, stop

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.network(features, stop=self.stop)


def exported_onnx(trained: TrainedModel, checkpoint: Path, stop: str = "logits") -> Path:
    """The network of ``checkpoint`` in ONNX, up to stage ``stop``, exported once and cached, with a dynamic batch axis.

    Named ``<checkpoint stem>.<network digest>.onnx`` (``.embedding.onnx`` for the network up to
    its embedding, ``stop="embedding"``), the digest of the network's name, input shape and
    weights and of the exporting PyTorch's version (:func:`network_digest`), so that a retrained
    checkpoint or another PyTorch exports again, while thresholds stored into the checkpoint
    later do not; an earlier export of the same kind for the same checkpoint name is removed.
    Beside the checkpoint, or in ``$MIX2_CACHE_DIR/engines`` where its folder cannot be written.
    Exported with PyTorch's TorchScript exporter (``dynamo=False``), which exports this network
    exactly in two seconds, without the extra packages of the newer one. The single output is
    named ``stop``.
    """
    folder = engine_folder(checkpoint)
    kind = "onnx" if stop == "logits" else f"{stop}.onnx"
    path = folder / f"{checkpoint.stem}.{network_digest(trained)}.{kind}"
    if path.is_file():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    example = torch.zeros(2, 1, *input_shape(trained.config))
    # A partial file of its own per process: the shards of an array job may export at once.
    with own_partial(path, durable=True) as partial, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's notice that a newer one exists
        torch.onnx.export(
            _UpTo(InferenceModel(trained).model, stop),  # batch norm folded
            (example,),
            str(partial),
            dynamo=False,
            input_names=["features"],
            output_names=[stop],
            dynamic_axes={"features": {0: "batch"}, stop: {0: "batch"}},
        )
    remove_other_weights(path, checkpoint)
    return path


def engine_folder(checkpoint: Path) -> Path:
    """Where a checkpoint's exported networks go: beside it, or in ``$MIX2_CACHE_DIR/engines`` where its folder cannot be written."""
    return checkpoint.parent if os.access(checkpoint.parent, os.W_OK) else cache_root() / "engines"


def remove_other_weights(path: Path, checkpoint: Path) -> None:
    """Remove the files beside ``path`` (named ``<checkpoint stem>.<digest>.<kind>``) of the same kind made for
    ``checkpoint``'s earlier weights: the same name with another digest."""
    kind = path.name[len(checkpoint.stem) + 18 :]  # after the stem, a dot, 16 hex digits and a dot
    same_kind = re.compile(rf"{re.escape(checkpoint.stem)}\.[0-9a-f]{{16}}\.{re.escape(kind)}")
    for earlier in path.parent.iterdir():
        if earlier != path and same_kind.fullmatch(earlier.name):
            earlier.unlink(missing_ok=True)


def int8_files(trained: TrainedModel, checkpoint: Path) -> tuple[Path, Path]:
    """The int8 network ``mix2 quantize`` writes for ``checkpoint`` (OpenVINO's ``.xml``, its weights in the
    ``.bin`` beside it) and the record of its check (``.json``), named by the network's digest."""
    stem = engine_folder(checkpoint) / f"{checkpoint.stem}.{network_digest(trained)}.int8"
    return stem.with_name(f"{stem.name}.xml"), stem.with_name(f"{stem.name}.json")


def int8_network(trained: TrainedModel, checkpoint: Path) -> Path:
    """The int8 network of ``checkpoint``, if ``mix2 quantize`` made it and its check passed; else a one-line error."""
    network, record = int8_files(trained, checkpoint)
    if not (network.is_file() and record.is_file()):
        raise Mix2Error(
            f"{checkpoint} has no int8 network; make and check one with: mix2 quantize {checkpoint.parent.parent}"
            + ("" if checkpoint.stem == "best" else f" --checkpoint {checkpoint.stem}")
        )
    check = json.loads(record.read_text())
    if not check["offered"]:
        raise Mix2Error(f"int8 is not offered for {checkpoint}: {check['verdict']}; predict in fp32 or bf16")
    return network


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
