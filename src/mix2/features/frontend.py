"""Audio -> the network's input: the one path that training (through the feature cache), evaluation and predict share.

Two steps, split where the feature cache stores: :meth:`FrontEnd.stored` computes the log-mel
(:class:`~mix2.features.logmel.LogMel`) and rounds it to float16, which is what the cache
holds; :func:`model_input` scales stored features per clip
(:func:`~mix2.features.logmel.normalize_per_clip`) into the network's float32 input. A window
that predict reads goes through both at once.

Example:
    >>> import torch
    >>> from mix2.config import FeatureConfig
    >>> front_end = FrontEnd(FeatureConfig())
    >>> front_end.stored(torch.zeros(2, 48_000)).dtype, front_end(torch.zeros(2, 48_000)).shape
    (torch.float16, torch.Size([2, 1, 128, 376]))
"""

from __future__ import annotations

import torch

from mix2.config import FeatureConfig
from mix2.features.logmel import LogMel, normalize_per_clip


class FrontEnd:
    """The front-end of ``features`` (a run's :class:`~mix2.config.FeatureConfig`), on ``device``."""

    def __init__(self, features: FeatureConfig, device: torch.device | str = "cpu") -> None:
        self.logmel = LogMel(**features.logmel_settings()).to(device)
        self.top_db = features.top_db

    @property
    def device(self) -> torch.device:
        return self.logmel.window.device

    @torch.no_grad()
    def stored(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` audio at the front-end's rate -> ``(batch, mels, frames)`` float16 log-mel (dB), as cached."""
        return self.logmel(audio.to(self.device)).to(torch.float16)

    def __call__(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` audio -> the network's input ``(batch, 1, mels, frames)``."""
        return model_input(self.stored(audio), self.top_db)


def model_input(stored: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """Stored features ``(batch, mels, frames)`` -> the network's input ``(batch, 1, mels, frames)``, float32,
    scaled per clip ``top_db`` under its loudest bin (``None``: min-max)."""
    return normalize_per_clip(stored.float()[:, None], top_db)


__all__ = ["FrontEnd", "model_input"]
