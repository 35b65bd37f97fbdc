"""Models, built by name through :data:`mix2.registry.MODELS`.

Example:
    >>> from mix2.models import create_model
    >>> model = create_model("mobilenetv3_large", num_classes=42)
"""

from __future__ import annotations

import torch
from torch import nn

from mix2.models import mobilenetv3  # noqa: F401  (registers the models)
from mix2.registry import MODELS


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the model registered as ``name`` (see ``MODELS.names()``)."""
    return MODELS.create(name, **kwargs)


def to_layout(x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``x`` in channels-last memory layout where ``channels_last``, else as it is."""
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
