"""Audio -> the network's input: the one path that training (through the feature cache), evaluation and predict share.

Two steps, split where the feature cache stores: :meth:`FrontEnd.stored` computes the log-mel
(:class:`~mix2.features.logmel.LogMel`) and rounds it to float16, which is what the cache
holds; :func:`model_input` scales stored features per clip
(:func:`~mix2.features.logmel.normalize_per_clip`) into the network's float32 input. A window
that predict reads goes through both at once, alone (``--exact-windows``) or cut from the
log-mel of its block (:meth:`FrontEnd.windows_of_block`).

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
        self.sample_rate_hz, self.hop_length = features.sample_rate_hz, features.hop_length

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

    def windows_of_block(self, audio: torch.Tensor, offsets: list[int], window_samples: int) -> torch.Tensor:
        """The network's input ``(windows, 1, mels, frames)`` of the windows of ``window_samples`` starting at each of
        ``offsets`` (samples, multiples of the hop) in ``audio`` ``(samples,)``, as :meth:`__call__` gives it for each
        window alone, with the log-mel computed once for the whole block.

        Each window's frames are cut from the block's log-mel, except the few at each end whose
        analysis window reaches past the window's edges (2 at ``n_fft`` 512 and hop 128): those
        are computed again from the window's own first and last samples, with the transform's
        reflected padding, exactly as when the window is transformed alone. The log-mel of a
        window at a clip's edge would otherwise hear up to ``n_fft / 2`` samples of its
        neighbours, which the network, trained on windows transformed alone, never heard (its
        max over time moved scores by up to 0.22 on the frog recordings).
        """
        hop, half_fft = self.hop_length, self.logmel.n_fft // 2
        if any(offset % hop for offset in offsets):
            raise ValueError(f"window offsets must be multiples of the hop ({hop} samples), got {offsets}")
        edge = -(-half_fft // hop)  # frames whose analysis window reaches past the window's start (or end)
        excerpt = edge * hop + half_fft + hop  # samples that hold the edge frames' analysis windows, and one frame more
        if excerpt >= window_samples:  # windows so short that the edges meet: each transformed alone
            return self(torch.stack([audio[offset : offset + window_samples] for offset in offsets]))
        stored = self.stored(audio[None])[0]
        frames = 1 + window_samples // hop
        windows = torch.stack([stored[:, offset // hop : offset // hop + frames] for offset in offsets])
        windows[:, :, :edge] = self.stored(torch.stack([audio[offset : offset + excerpt] for offset in offsets]))[:, :, :edge]
        tail = (window_samples - excerpt) // hop * hop  # a frame boundary, so that the excerpt's frames are the window's
        ends = torch.stack([audio[offset + tail : offset + window_samples] for offset in offsets])
        windows[:, :, -edge:] = self.stored(ends)[:, :, -edge:]
        return model_input(windows, self.top_db)


def model_input(stored: torch.Tensor, top_db: float | None) -> torch.Tensor:
    """Stored features ``(batch, mels, frames)`` -> the network's input ``(batch, 1, mels, frames)``, float32,
    scaled per clip ``top_db`` under its loudest bin (``None``: min-max)."""
    return normalize_per_clip(stored.float()[:, None], top_db)


__all__ = ["FrontEnd", "model_input"]
