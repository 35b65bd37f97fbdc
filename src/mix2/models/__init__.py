"""Models, built by name through :data:`mix2.registry.MODELS`.

A model is registered with ``@MODELS.register("name")`` on a factory that takes ``num_classes``,
``n_mels`` (the input's height) and ``bn_momentum``, and it keeps the :class:`StagedModel`
interface, which the mixers, the micro-batches, the ADD loss and inference rely on. A new model
is one file in this folder, imported below; :func:`network_for` builds the one a configuration
names, for training and for inference alike.

Example:
    >>> from mix2.models import create_model
    >>> model = create_model("mobilenetv3_large", num_classes=42)
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import nn

from mix2.config import RunConfig
from mix2.models import mobilenetv3  # noqa: F401  (registers the models)
from mix2.registry import MODELS


@runtime_checkable
class StagedModel(Protocol):
    """What mix2 needs of a model: a forward pass between named stages.

    ``stages`` names the points at which the pass can stop and resume, in order; it begins with
    ``"input"`` (the spectrogram ``(batch, 1, mels, frames)``) and ends with ``"embedding"`` (a
    ``(batch, dim)`` vector, which Manifold Mixup, MultiMix and the ADD loss use) and ``"logits"``
    ``(batch, classes)``. Mixers run the model up to a stage, mix the batch there, and resume.
    ``classifier`` is the linear layer from the embedding to the logits: :mod:`mix2.transfer`
    re-makes it for new classes, and a linear probe trains it alone.
    """

    stages: tuple[str, ...]
    classifier: nn.Linear

    def __call__(self, x: torch.Tensor, start: str = "input", stop: str = "logits") -> torch.Tensor:
        """Run the stages after ``start`` up to and including ``stop``; ``x`` is ``start``'s output."""
        ...

    def forward_with_embedding(self, x: torch.Tensor, start: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, embedding)`` in one pass from stage ``start``."""
        ...


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` (see ``MODELS.names()``)."""
    return MODELS.create(name, **kwargs)


def network_for(config: RunConfig, num_classes: int) -> nn.Module:
    """The network ``config.train.model`` names, for ``num_classes`` classes and the configuration's input and batch norm."""
    return create_model(
        config.train.model, num_classes=num_classes, n_mels=config.features.n_mels, bn_momentum=config.train.bn_momentum
    )


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last memory layout where ``channels_last``, else as it is."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
