"""Classification losses, built by name through :data:`mix2.registry.LOSSES`.

Every loss takes ``(logits, targets, embedding)``: targets may be soft (mixed or multi-hot), and
the embedding is there for losses that shape it.

Example:
    >>> import torch
    >>> loss = create_loss("bce")
    >>> float(loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 960)))  # log 2
    0.6931471824645996
"""

from __future__ import annotations

import torch
from torch import nn

from mix2.registry import LOSSES


class BinaryCrossEntropy(nn.Module):
    """Mean binary cross-entropy on logits against soft or hard targets, ``(batch, classes)``."""

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits, targets)


@LOSSES.register("bce")
def bce() -> BinaryCrossEntropy:
    return BinaryCrossEntropy()


def create_loss(name: str, **kwargs) -> nn.Module:
    """Build the loss registered as ``name``."""
    return LOSSES.create(name, **kwargs)
