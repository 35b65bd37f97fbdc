"""Decode, mix to mono, resample and fit audio to a window (soundfile and soxr).

:func:`read_windows` is the one reader of fixed-length windows: the feature cache (training and
evaluation) and ``mix2 predict --exact-windows`` both take their clips from it, so a window
gives the same samples, and the same scores, whichever path reads it. :func:`read_blocks`
reads the same windows a block at a time, for a front-end computed once per block.

Example:
    >>> import numpy as np, soundfile as sf, tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
    >>> sf.write(path, np.zeros((44_100, 2)), 44_100)
    >>> read_audio(path, sample_rate_hz=16_000).shape
    (16000,)
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from mix2.errors import Mix2Error, input_error

AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg")
MAX_ABS_SAMPLE = 1e6
"""Samples beyond this are not audio (full scale is 1.0; float files in 16-bit units reach 32768)."""
NOT_UTF8 = "the file name is not valid UTF-8; rename the file to read it"
BLOCK_S = 120.0
"""The most audio :func:`read_windows` decodes at once from one recording, in seconds (more only where one window is longer)."""


def read_audio(
    path: str | Path,
    sample_rate_hz: int,
    start_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Read ``duration_s`` seconds from ``start_s`` (the rest of the file if ``None``).

    Returns mono float32 samples at ``sample_rate_hz``, shape ``(samples,)``. Only the requested
    span is decoded. Raises :class:`~mix2.errors.Mix2Error` naming the file when it cannot be
    read or holds no samples.
    """
    if not Path(path).is_file():
        raise input_error(path, "no such audio file")
    try:
        with sf.SoundFile(str(path)) as audio:
            native_hz = audio.samplerate
            first = round(start_s * native_hz)
            count = -1 if duration_s is None else round(duration_s * native_hz)
            if first > 0:
                audio.seek(min(first, audio.frames))
            samples = audio.read(frames=count, dtype="float32", always_2d=True)
            total_frames = audio.frames
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(path, err) from None
    if total_frames == 0:
        raise input_error(path, "the audio file holds no samples")
    return resample_checked(samples.mean(axis=1), native_hz, sample_rate_hz, path)


def read_windows(path: str | Path, starts_s: Sequence[float], window_s: float, sample_rate_hz: int) -> Iterator[np.ndarray]:
    """The mono audio of each window, ``window_s`` long from each of ``starts_s`` (ascending), at
    ``sample_rate_hz``: ``(round(window_s * sample_rate_hz),)`` each, zero-padded past the end.

    The file is decoded a block of at most :data:`BLOCK_S` seconds at a time, so memory stays
    bounded whatever the recording's length; each window is cut at the file's own rate and then
    resampled alone, so its samples do not depend on the other windows read with it. A window
    that starts where the audio has ended (a truncated file, or wrong times) is an error naming
    the file, as is a file that cannot be decoded or holds no samples.

    Example:
        >>> import numpy as np, soundfile as sf, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
        >>> sf.write(path, np.ones(44_100 * 4), 44_100)
        >>> [clip.shape for clip in read_windows(path, [0.0, 2.0], window_s=3.0, sample_rate_hz=16_000)]
        [(48000,), (48000,)]
    """
    length = round(window_s * sample_rate_hz)
    for block, mono, native_hz in _decoded_blocks(path, starts_s, window_s):
        span = round(window_s * native_hz)
        for start_s in block:
            offset = round(start_s * native_hz) - round(block[0] * native_hz)
            clip = resample_checked(mono[offset : offset + span], native_hz, sample_rate_hz, path)
            yield fit_length(clip, length)


def read_blocks(
    path: str | Path, starts_s: Sequence[float], window_s: float, sample_rate_hz: int
) -> Iterator[tuple[list[float], np.ndarray]]:
    """The windows of :func:`read_windows` a block at a time: ``(the block's window starts, its audio)``.

    The audio runs from the block's first start to its last start plus ``window_s``, mono,
    resampled to ``sample_rate_hz`` in one piece and zero-padded past the recording's end:
    ``(round((last - first + window_s) * sample_rate_hz),)``. Each window lies inside it; only
    the edges of a window differ from :func:`read_windows`' (there the audio around it is the
    recording's, not the resampler's edge). Blocks, errors and memory are as in :func:`read_windows`.

    Example:
        >>> import numpy as np, soundfile as sf, tempfile, os
        >>> path = os.path.join(tempfile.mkdtemp(), "tone.wav")
        >>> sf.write(path, np.ones(44_100 * 4), 44_100)
        >>> [(block, audio.shape) for block, audio in read_blocks(path, [0.0, 1.0, 2.0], 3.0, 16_000)]
        [([0.0, 1.0, 2.0], (80000,))]
    """
    for block, mono, native_hz in _decoded_blocks(path, starts_s, window_s):
        audio = resample_checked(mono, native_hz, sample_rate_hz, path)
        yield block, fit_length(audio, round((block[-1] - block[0] + window_s) * sample_rate_hz))


def _decoded_blocks(
    path: str | Path, starts_s: Sequence[float], window_s: float
) -> Iterator[tuple[list[float], np.ndarray, int]]:
    """``(window starts, mono samples at the file's rate from the first start, that rate)`` of each block of windows."""
    if not Path(path).is_file():
        raise input_error(path, "no such audio file")
    try:
        with sf.SoundFile(str(path)) as audio:
            if audio.frames == 0:
                raise input_error(path, "the audio file holds no samples")
            native_hz = audio.samplerate
            span = round(window_s * native_hz)
            for block in _blocks(starts_s, window_s):
                first = round(block[0] * native_hz)
                audio.seek(min(first, audio.frames))
                samples = audio.read(round(block[-1] * native_hz) + span - first, dtype="float32", always_2d=True)
                if round(block[-1] * native_hz) - first >= samples.shape[0]:  # the header promised more audio than the file holds
                    late = next(s for s in block if round(s * native_hz) - first >= samples.shape[0])
                    raise ends_before(path, late, (first + samples.shape[0]) / native_hz)
                yield block, samples.mean(axis=1), native_hz
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(path, err) from None


def _blocks(starts_s: Sequence[float], window_s: float) -> Iterator[list[float]]:
    """Consecutive runs of window starts whose audio spans at most :data:`BLOCK_S` (at least one window each)."""
    block: list[float] = []
    for start_s in starts_s:
        if block and start_s + window_s - block[0] > BLOCK_S:
            yield block
            block = []
        block.append(start_s)
    if block:
        yield block


def resample_checked(mono: np.ndarray, native_hz: int, sample_rate_hz: int, path: str | Path) -> np.ndarray:
    """Resample mono float32 samples with soxr (HQ), ``(n,) -> (m,)``.

    NaN, infinite, or absurdly large samples (beyond :data:`MAX_ABS_SAMPLE`, where the log-mel
    would overflow) are an error naming ``path``.
    """
    if native_hz != sample_rate_hz and mono.size:
        mono = soxr.resample(mono, native_hz, sample_rate_hz, quality="HQ").astype(np.float32)
    if not np.isfinite(mono).all():
        raise input_error(path, "the audio holds NaN or infinite samples")
    if mono.size and np.abs(mono).max() > MAX_ABS_SAMPLE:
        raise input_error(path, f"samples reach {np.abs(mono).max():.3g}, far beyond full scale (1.0): not audio")
    return mono


def ends_before(path: str | Path, clip_start_s: float, audio_end_s: float) -> Mix2Error:
    """The error for a clip that starts where the decodable audio has already ended."""
    return input_error(
        path,
        f"the audio ends at {audio_end_s:.2f} s, before a clip that starts at {clip_start_s:.2f} s "
        "(a truncated file, or a table with the wrong times)",
    )


def find_audio(folder: str | Path) -> list[Path]:
    """Audio files (wav, flac, mp3, ogg) below ``folder``, searched recursively, in sorted order."""
    return sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())


def is_utf8(path: str | Path) -> bool:
    """Whether the path is valid UTF-8, so that tables can name it (Python holds undecodable bytes as lone surrogates)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: str | Path) -> str:
    r"""The path as text that any table can hold: undecodable bytes shown as ``\xNN``."""
    return os.fsencode(str(path)).decode("utf-8", errors="backslashreplace")


def fit_length(samples: np.ndarray, n_samples: int) -> np.ndarray:
    """Crop, or pad with zeros at the end, to exactly ``n_samples``: ``(samples,) -> (n_samples,)``."""
    if samples.shape[0] >= n_samples:
        return samples[:n_samples]
    return np.pad(samples, (0, n_samples - samples.shape[0]))


def duration_s(path: str | Path) -> float:
    """The recording's duration in seconds, from its header alone."""
    if not Path(path).is_file():
        raise input_error(path, "no such audio file")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(path, err) from None
    return info.frames / info.samplerate


def unreadable_audio(path: str | Path, err: Exception) -> Mix2Error:
    """The one-line error for audio that soundfile cannot decode, with the first line of its reason."""
    text = str(err).strip()
    return input_error(path, f"unreadable audio ({text.splitlines()[0] if text else type(err).__name__})")
