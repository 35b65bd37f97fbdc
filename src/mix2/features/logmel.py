"""The log-mel front-end, in plain PyTorch.

It matches ``torchaudio.transforms.MelSpectrogram`` followed by ``AmplitudeToDB`` with their
defaults, as the paper's code uses them: periodic Hann window of ``n_fft`` samples, centred
frames with reflect padding, power spectrum, HTK mel scale without filter normalisation, then
``10 * log10(max(x, 1e-10))``. The tests check it against librosa.

With the defaults, a 3 s clip at 16 kHz (48,000 samples) gives ``(128, 376)``.

Example:
    >>> import torch
    >>> LogMel()(torch.zeros(2, 48_000)).shape
    torch.Size([2, 128, 376])
"""

from __future__ import annotations

import torch
from torch import nn

AMIN = 1e-10


def hz_to_mel(frequency_hz: torch.Tensor | float) -> torch.Tensor:
    """HTK mel scale: ``2595 * log10(1 + f / 700)``."""
    return 2595.0 * torch.log10(1.0 + torch.as_tensor(frequency_hz, dtype=torch.float64) / 700.0)


def mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return 700.0 * (10.0 ** (mel / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, f_min_hz: float, f_max_hz: float, n_mels: int, sample_rate_hz: int) -> torch.Tensor:
    """Triangular HTK mel filters, unnormalised: ``(n_freqs, n_mels)``, float32."""
    fft_hz = torch.linspace(0, sample_rate_hz // 2, n_freqs, dtype=torch.float64)
    mel_points = torch.linspace(hz_to_mel(f_min_hz), hz_to_mel(f_max_hz), n_mels + 2, dtype=torch.float64)
    edges_hz = mel_to_hz(mel_points)
    widths = edges_hz[1:] - edges_hz[:-1]
    slopes = edges_hz[None, :] - fft_hz[:, None]
    rising = -slopes[:, :-2] / widths[:-1]
    falling = slopes[:, 2:] / widths[1:]
    return torch.clamp(torch.minimum(rising, falling), min=0.0).float()


def log_mel(
    waveform: torch.Tensor,
    window: torch.Tensor,
    filterbank: torch.Tensor,
    n_fft: int,
    hop_length: int,
) -> torch.Tensor:
    """``(batch, samples) -> (batch, n_mels, frames)`` log-mel power in dB."""
    spectrum = torch.stft(
        waveform, n_fft=n_fft, hop_length=hop_length, window=window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spectrum.real.square() + spectrum.imag.square()
    mel = torch.matmul(power.transpose(-1, -2), filterbank).transpose(-1, -2)
    return 10.0 * torch.log10(torch.clamp(mel, min=AMIN))


class LogMel(nn.Module):
    """Module form of :func:`log_mel`, holding the window and the filterbank.

    Args:
        sample_rate_hz: input sample rate (16,000).
        n_fft: FFT and window length in samples (512).
        hop_length: samples between frames (128).
        n_mels: mel bins (128).
        f_min_hz, f_max_hz: band of the filterbank (0 to Nyquist).
    """

    def __init__(
        self,
        sample_rate_hz: int = 16_000,
        n_fft: int = 512,
        hop_length: int = 128,
        n_mels: int = 128,
        f_min_hz: float = 0.0,
        f_max_hz: float | None = None,
    ) -> None:
        super().__init__()
        f_max_hz = sample_rate_hz / 2 if f_max_hz is None else f_max_hz
        if not 0 <= f_min_hz < f_max_hz <= sample_rate_hz / 2:
            raise ValueError(f"need 0 <= f_min_hz < f_max_hz <= {sample_rate_hz / 2} (got {f_min_hz}, {f_max_hz})")
        if hop_length <= 0 or n_fft <= 0 or n_mels <= 0:
            raise ValueError("n_fft, hop_length and n_mels must be positive")
        self.n_fft = n_fft
        self.hop_length = hop_length
        # float32 whatever the default type (a run in float64 sets it): the front-end computes in float32
        self.register_buffer("window", torch.hann_window(n_fft, periodic=True, dtype=torch.float32), persistent=False)
        filterbank = mel_filterbank(n_fft // 2 + 1, f_min_hz, f_max_hz, n_mels, sample_rate_hz)
        self.register_buffer("filterbank", filterbank, persistent=False)

    def forward(self, waveform: torch.Tensor) -> torch.Tensor:
        """``(batch, samples) -> (batch, n_mels, 1 + samples // hop_length)`` in dB."""
        return log_mel(waveform, self.window, self.filterbank, self.n_fft, self.hop_length)


def normalize_per_clip(features: torch.Tensor, top_db: float | None = 80.0) -> torch.Tensor:
    """Scale each clip's dB values to [0, 1]: ``(batch, ...) -> (batch, ...)``.

    With ``top_db`` (80 dB, as ``librosa.power_to_db(top_db=80)``), values more than ``top_db``
    under the clip's loudest bin are raised to that floor (or to the clip's minimum, where the
    clip spans less), which maps to 0, and each dB above it adds ``1 / top_db``: the loudest
    bin of a clip that spans ``top_db`` or more is 1. Without the floor, one empty mel band
    (the lowest filter at ``n_fft`` 512 and 128 mels holds no FFT bin, so it sits at -100 dB)
    would set every clip's minimum, and min-max scaling would squeeze the real content into
    the top of [0, 1]. With ``top_db=None`` it is that plain min-max scaling.

    Per clip, not per batch as in the paper's code, so a clip's input never depends on which
    other clips share its batch (training, evaluation and prediction then agree). A constant
    clip gives 0.

    Example:
        >>> clip = torch.tensor([[-120.0, -60.0, -30.0, -20.0]], dtype=torch.float64)
        >>> normalize_per_clip(clip).tolist()
        [[0.0, 0.5, 0.875, 1.0]]
        >>> normalize_per_clip(clip, top_db=None).tolist()
        [[0.0, 0.6, 0.9, 1.0]]
    """
    flat = features.flatten(1)
    shape = (-1, *[1] * (features.dim() - 1))
    high, low = flat.max(dim=1).values.view(shape), flat.min(dim=1).values.view(shape)
    if top_db is None:
        return (features - low) / (high - low).clamp(min=1e-6)
    floor = torch.maximum(low, high - top_db)
    return (torch.maximum(features, floor) - floor) / top_db


__all__ = ["LogMel", "log_mel", "mel_filterbank", "normalize_per_clip"]
