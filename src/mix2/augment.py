"""SpecAugment and random circular time shift, drawn per clip.

Each transform validates its arguments at construction, draws its random parameters in one
place (:meth:`draw`) and applies them deterministically (:meth:`apply`); calling it does both.
Unlike ``torchaudio.transforms.FrequencyMasking`` without ``iid_masks``, which puts one mask on
the whole batch, every clip gets its own masks and its own shift.

Example:
    >>> import torch
    >>> spec = torch.rand(4, 1, 128, 376)
    >>> SpecAugment()(spec).shape
    torch.Size([4, 1, 128, 376])
    >>> shift = CircularTimeShift()
    >>> params = shift.draw(spec)
    >>> torch.equal(shift.apply(spec, params), shift.apply(spec, params))
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mix2.config import MASK_FILLS, AugmentConfig


def _bands(starts: torch.Tensor, widths: torch.Tensor, size: int) -> torch.Tensor:
    """``(batch, masks)`` starts and widths -> ``(batch, size)`` bool, true inside any band."""
    index = torch.arange(size, device=starts.device)
    inside = (index >= starts[..., None]) & (index < (starts + widths)[..., None])
    return inside.any(dim=1)


def _draw_bands(batch: int, masks: int, max_width: int, size: int, generator: torch.Generator | None, device) -> tuple:
    widths = torch.randint(0, max_width + 1, (batch, masks), generator=generator, device=device).clamp(max=size)
    starts = (torch.rand(batch, masks, generator=generator, device=device) * (size - widths + 1)).long()
    return starts, widths


@dataclass(frozen=True)
class MaskParams:
    """Bands drawn by :class:`SpecAugment`, each ``(batch, masks)``."""

    freq_starts: torch.Tensor
    freq_widths: torch.Tensor
    time_starts: torch.Tensor
    time_widths: torch.Tensor


class SpecAugment:
    """Zero out random frequency bands and time spans of each clip (Park et al., 2019).

    Args:
        freq_masks: frequency masks per clip (3).
        max_freq_mask_bins: widest frequency mask, in mel bins (9); each width is uniform in
            ``[0, max_freq_mask_bins]``.
        time_masks: time masks per clip (6).
        max_time_mask_frames: widest time mask, in frames (29).
        fill: what the masks hold: ``"mean"`` (default), each clip's own mean before masking, a
            level the clip really has; or ``"zero"``, the floor of the scaled features (the
            paper's code), which on real recordings lies far below the background noise.
    """

    def __init__(
        self,
        freq_masks: int = 3,
        max_freq_mask_bins: int = 9,
        time_masks: int = 6,
        max_time_mask_frames: int = 29,
        fill: str = "mean",
    ) -> None:
        for name, value in [
            ("freq_masks", freq_masks),
            ("max_freq_mask_bins", max_freq_mask_bins),
            ("time_masks", time_masks),
            ("max_time_mask_frames", max_time_mask_frames),
        ]:
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        self.freq_masks = freq_masks
        self.max_freq_mask_bins = max_freq_mask_bins
        self.time_masks = time_masks
        self.max_time_mask_frames = max_time_mask_frames
        if fill not in MASK_FILLS:
            raise ValueError(f"fill must be one of {', '.join(MASK_FILLS)}, got {fill!r}")
        self.fill = fill

    def draw(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> MaskParams:
        """Draw each clip's bands for ``spec`` of shape ``(batch, channels, mels, frames)``."""
        batch, _, mels, frames = spec.shape
        freq = _draw_bands(batch, self.freq_masks, self.max_freq_mask_bins, mels, generator, spec.device)
        time = _draw_bands(batch, self.time_masks, self.max_time_mask_frames, frames, generator, spec.device)
        return MaskParams(*freq, *time)

    def apply(self, spec: torch.Tensor, params: MaskParams) -> torch.Tensor:
        """Mask ``spec`` ``(batch, channels, mels, frames)`` with ``params``; returns a new tensor."""
        _, _, mels, frames = spec.shape
        freq = _bands(params.freq_starts, params.freq_widths, mels)[:, None, :, None]
        time = _bands(params.time_starts, params.time_widths, frames)[:, None, None, :]
        masked = freq | time
        if self.fill == "zero":
            return spec.masked_fill(masked, 0.0)
        return torch.where(masked, spec.mean(dim=(1, 2, 3), keepdim=True), spec)

    def __call__(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(spec, self.draw(spec, generator))


class CircularTimeShift:
    """Roll each clip along time by a random number of frames, wrapping around.

    Args:
        max_shift_frames: largest shift; ``None`` (default) allows any shift up to the clip's
            length minus one, as in the paper's code.
    """

    def __init__(self, max_shift_frames: int | None = None) -> None:
        if max_shift_frames is not None and (not isinstance(max_shift_frames, int) or max_shift_frames < 0):
            raise ValueError(f"max_shift_frames must be a non-negative integer or None, got {max_shift_frames!r}")
        self.max_shift_frames = max_shift_frames

    def draw(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Shifts in frames, ``(batch,)``, uniform in ``[0, max_shift_frames]``."""
        frames = spec.shape[-1]
        high = frames - 1 if self.max_shift_frames is None else min(self.max_shift_frames, frames - 1)
        return torch.randint(0, high + 1, (spec.shape[0],), generator=generator, device=spec.device)

    def apply(self, spec: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
        """``out[b, ..., t] = spec[b, ..., (t - shifts[b]) mod frames]``; shapes kept."""
        frames = spec.shape[-1]
        source = (torch.arange(frames, device=spec.device) - shifts[:, None]) % frames
        return spec.gather(-1, source.view(spec.shape[0], *[1] * (spec.dim() - 2), frames).expand_as(spec))

    def __call__(self, spec: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.apply(spec, self.draw(spec, generator))


class ClipAugmentation:
    """A run's augmentation (:class:`~mix2.config.AugmentConfig`): the time shift, then SpecAugment, each where enabled.

    Example:
        >>> augment = ClipAugmentation(AugmentConfig(time_shift=False))
        >>> augment(torch.rand(2, 1, 64, 50)).shape
        torch.Size([2, 1, 64, 50])
    """

    def __init__(self, config: AugmentConfig) -> None:
        self.time_shift = CircularTimeShift(config.max_shift_frames) if config.time_shift else None
        self.spec_augment = (
            SpecAugment(
                config.freq_masks, config.max_freq_mask_bins, config.time_masks, config.max_time_mask_frames, config.mask_fill
            )
            if config.specaugment
            else None
        )

    def __call__(self, spec: torch.Tensor) -> torch.Tensor:
        if self.time_shift is not None:
            spec = self.time_shift(spec)
        if self.spec_augment is not None:
            spec = self.spec_augment(spec)
        return spec
