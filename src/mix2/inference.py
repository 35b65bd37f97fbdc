"""A trained network for inference, rebuilt from its checkpoint without the training module.

A checkpoint written by ``mix2 train`` carries the run's configuration (the front-end
settings, the model's registered name), the class names, the network's weights and, once the
run was evaluated, per-class thresholds tuned on validation. :func:`load_trained_model` reads
it with ``torch.load(weights_only=True)`` (tensors and plain data, never code) and rebuilds
only the network, by its registered name; :class:`InferenceModel` runs it with batch norm
folded into the convolutions. Evaluation and :mod:`mix2.predict` score through these.

Example:
    >>> trained = load_trained_model(resolve_checkpoint("runs/chorus-20261121-193000"))  # doctest: +SKIP
    >>> trained.classes[:2], trained.thresholds is None  # doctest: +SKIP
    (['Boana_fictus', 'Dendropsophus_falsus'], False)
"""

from __future__ import annotations

import copy
import pickle
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mix2.config import RunConfig
from mix2.errors import Mix2Error, input_error
from mix2.files import atomic_path
from mix2.models import network_for, to_layout
from mix2.models.fusion import fold_batch_norm
from mix2.models.micro_batches import in_micro_batches

NETWORK_PREFIX = "model."
"""Where the network's weights sit in a training checkpoint's ``state_dict`` (the module's ``model``)."""


@dataclass
class TrainedModel:
    """What a checkpoint holds for inference.

    Attributes:
        network: the network in eval mode, ``(batch, 1, mels, frames)`` -> ``(batch, classes)`` logits.
        classes: class names, in logit order.
        config: the run's configuration (front-end in ``config.features``, window in ``config.data``).
        thresholds: per-class thresholds tuned on validation ``(classes,)``, or ``None`` where none were stored.
    """

    network: nn.Module
    classes: list[str]
    config: RunConfig
    thresholds: np.ndarray | None


def load_checkpoint(checkpoint: str | Path) -> dict[str, Any]:
    """A checkpoint's contents, loaded with ``torch.load(weights_only=True)``: tensors and plain data, never code.

    Anything else (a missing, truncated or tampered file) is a one-line :class:`~mix2.errors.Mix2Error`.
    """
    if not Path(checkpoint).is_file():
        raise input_error(checkpoint, "no such checkpoint file")
    try:
        return torch.load(checkpoint, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as err:
        raise _unloadable(checkpoint, err) from None


def load_trained_model(checkpoint: str | Path) -> TrainedModel:
    """Rebuild the network a checkpoint holds, with its classes, configuration and tuned thresholds."""
    return trained_model(load_checkpoint(checkpoint), checkpoint)


def trained_model(state: dict[str, Any], checkpoint: str | Path) -> TrainedModel:
    """The :class:`TrainedModel` in a checkpoint's loaded ``state`` (:func:`load_checkpoint`); ``checkpoint`` names it in errors."""
    try:
        config, classes, weights = stored_run(state)
        network = network_for(config, len(classes))
        network.load_state_dict(weights)
    except (RuntimeError, KeyError, TypeError, ValueError, Mix2Error) as err:
        raise _unloadable(checkpoint, err) from None
    tuned = state.get("thresholds")
    thresholds = None if tuned is None else np.array([tuned[c] for c in classes], dtype=np.float64)
    return TrainedModel(network.eval(), classes, config, thresholds)


def stored_run(state: dict[str, Any], origin: str = "configuration") -> tuple[RunConfig, list[str], dict[str, torch.Tensor]]:
    """The configuration, class names and network weights (without their ``model.`` prefix) in a checkpoint's
    loaded ``state``; a ``KeyError``, ``TypeError``, ``ValueError`` or :class:`~mix2.errors.Mix2Error` where
    it holds none. ``origin`` names the checkpoint in a configuration's errors."""
    settings = dict(state["hyper_parameters"]["config"])  # ``state`` is left as loaded: it may be saved again
    # checkpoints from before top_db was a setting were min-max scaled
    settings["features"] = {"top_db": None, **settings["features"]}
    classes = list(state["hyper_parameters"]["classes"])
    weights = {k[len(NETWORK_PREFIX) :]: v for k, v in state["state_dict"].items() if k.startswith(NETWORK_PREFIX)}
    return RunConfig.from_dict(settings, origin), classes, weights


def input_shape(config: RunConfig) -> tuple[int, int]:
    """``(mels, frames)`` of one window of ``config``'s runs: the network's input is ``(batch, 1, mels, frames)``.

    Example:
        >>> input_shape(RunConfig())
        (128, 376)
    """
    features = config.features
    return features.n_mels, 1 + round(config.data.window_s * features.sample_rate_hz) // features.hop_length


class InferenceModel(nn.Module):
    """A trained network for inference: ``(batch, 1, mels, frames)`` -> ``(batch, classes)`` logits.

    With ``fold`` (default), batch norm is folded into the convolutions
    (:func:`~mix2.models.fusion.fold_batch_norm`), which leaves fp32 logits unchanged up to
    float rounding. Under bf16 the folded weights round worse than the separate layers, so bf16
    inference keeps them apart. The memory layout and the micro-batch size are the run's.
    """

    def __init__(self, trained: TrainedModel, fold: bool = True) -> None:
        super().__init__()
        self.channels_last = trained.config.train.channels_last
        self.micro_batch_size = trained.config.train.micro_batch_size
        self.model = fold_batch_norm(trained.network) if fold else copy.deepcopy(trained.network).eval()
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor, stop: str = "logits") -> torch.Tensor:
        """``(batch, 1, mels, frames)`` -> the output of stage ``stop``: logits, or ``"embedding"`` ``(batch, 960)``."""
        return in_micro_batches(self.model, self.micro_batch_size)(to_layout(x, self.channels_last), stop=stop)


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: a ``.ckpt`` file as it is; a run folder or its
    ``checkpoints/`` folder gives its kept checkpoint, ``best.ckpt``."""
    path = Path(path)
    if not path.is_dir():
        return path
    for candidate in (path / "checkpoints" / "best.ckpt", path / "best.ckpt"):
        if candidate.is_file():
            return candidate
    raise input_error(
        path, "a folder without a checkpoint; pass a run folder (its checkpoints/best.ckpt is used) or a .ckpt file"
    )


def store_thresholds(checkpoint: str | Path, state: dict[str, Any], thresholds: dict[str, float]) -> None:
    """Write per-class thresholds (class name -> threshold) into a checkpoint whose loaded ``state`` is given, atomically."""
    state["thresholds"] = {name: float(value) for name, value in thresholds.items()}
    with atomic_path(checkpoint) as partial:
        torch.save(state, partial)


def _unloadable(checkpoint: str | Path, err: Exception) -> Mix2Error:
    """One line on why ``checkpoint`` does not load; never PyTorch's own advice to load it unsafely."""
    if not zipfile.is_zipfile(checkpoint):
        problem = "not a mix2 checkpoint: not a file PyTorch saved, or one cut short (pass the .ckpt that mix2 train wrote)"
    elif isinstance(err, pickle.UnpicklingError):
        problem = (
            "not a mix2 checkpoint: it holds Python objects beyond tensors and plain data, and mix2 never runs "
            "code from a checkpoint (is it from another tool, or modified?)"
        )
    else:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        problem = f"not a mix2 checkpoint, or a damaged one ({reason[:160]})"
    return input_error(checkpoint, problem)
