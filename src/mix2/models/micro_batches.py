"""Run a staged model over a batch in chunks: the speed of small batches, the loss of the whole one.

On a CPU, MobileNetV3 trains fastest per clip at 16 to 32 clips per call (measured by
``benchmarks/speed.py``), while the paper's batch is 128. :class:`MicroBatches` runs the model's
stages chunk by chunk and joins their outputs, so a mixer and a loss see the whole batch:
MultiMix mixes all of its clips and the ADD loss counts all of its pairs. One backward pass
then accumulates every chunk's gradient. Memory is that of the whole batch, since each chunk's
activations are kept for the backward pass.

Every stage acts on each clip alone except batch norm in training mode, which normalises each
chunk by its own statistics (as it does on each device in multi-GPU training); in evaluation
mode the chunked model gives the whole-batch result.

Example:
    >>> import torch
    >>> from mix2.models import create_model
    >>> model = create_model("mobilenetv3_large", num_classes=3).eval()
    >>> x = torch.rand(5, 1, 64, 64)
    >>> torch.allclose(MicroBatches(model, 2)(x), model(x), atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class MicroBatches:
    """A staged model (``model(x, start=..., stop=...)``) run in chunks of ``size`` clips.

    It has the staged model's interface: ``__call__(x, start, stop)`` and
    :meth:`forward_with_embedding`, on ``(batch, ...)`` inputs of any batch size.
    """

    def __init__(self, model: nn.Module, size: int) -> None:
        if size < 1:
            raise ValueError(f"the micro-batch size must be positive, got {size}")
        self.model = model
        self.size = size

    @property
    def stages(self) -> tuple[str, ...]:
        """The staged model's stages."""
        return self.model.stages

    def __call__(self, x: torch.Tensor, start: str = "input", stop: str = "logits") -> torch.Tensor:
        """``model(x, start, stop)``, chunk by chunk along the batch, joined."""
        return in_chunks(lambda chunk: self.model(chunk, start=start, stop=stop), x, self.size)

    def forward_with_embedding(self, x: torch.Tensor, start: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, embedding)`` from stage ``start``; the embedding of the whole batch, ``(batch, dim)``."""
        embedding = self(x, start=start, stop="embedding")
        return self.model(embedding, start="embedding"), embedding


def in_chunks(function: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, size: int | None) -> torch.Tensor:
    """``function(x)``, run on chunks of ``size`` rows of ``x`` and joined (on ``x`` whole where ``size`` is ``None``)."""
    if size is None or x.shape[0] <= size:
        return function(x)
    return torch.cat([function(chunk) for chunk in x.split(size)])


def in_micro_batches(model: nn.Module, size: int | None) -> nn.Module | MicroBatches:
    """``model`` run in chunks of ``size`` clips, or ``model`` itself where ``size`` is ``None``."""
    return MicroBatches(model, size) if size else model
