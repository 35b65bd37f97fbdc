"""Which windows a recording gives, and their audio read a bounded block at a time."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from mix2.data.audio import (
    AUDIO_EXTENSIONS,
    ends_before,
    find_audio,
    fit_length,
    resample_checked,
    unreadable_audio,
)
from mix2.data.events import TIME_TOLERANCE_S, window_starts
from mix2.errors import Mix2Error, input_error

BLOCK_S = 120.0
"""The most audio read at once from one recording, in seconds (more only where one window is longer)."""


@dataclass(frozen=True)
class Window:
    """One window of a recording, in seconds."""

    start_s: float
    end_s: float


def find_recordings(paths: list[str | Path]) -> list[Path]:
    """Audio files among ``paths``: files as given, folders searched recursively, in sorted order.

    Files whose names are not valid UTF-8 are included; :func:`predict` lists them as failures.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += find_audio(path)
        elif path.is_file():
            found.append(path)
        else:
            raise input_error(path, "no such file or folder")
    if not found:
        raise Mix2Error(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(found))


def recording_windows(duration_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every window of a recording, the padded tail window included.

    Example:
        >>> recording_windows(4.5, 3.0, 1.0)
        [(0.0, 3.0), (1.0, 4.0), (2.0, 4.5)]
    """
    starts = window_starts(duration_s, window_s, hop_s)
    windows = [(float(s), float(min(s + window_s, duration_s))) for s in starts]
    tail = float(np.round(starts[-1] + hop_s, 6))
    if starts[-1] + window_s < duration_s - TIME_TOLERANCE_S and tail < duration_s - TIME_TOLERANCE_S:
        windows.append((tail, float(duration_s)))
    return windows


def read_windows(path: Path, windows: list[Window], window_s: float, sample_rate_hz: int) -> Iterator[np.ndarray]:
    """The mono audio of each window, ``(round(window_s * sample_rate_hz),)``, read a block at a time."""
    length = round(window_s * sample_rate_hz)
    try:
        with sf.SoundFile(str(path)) as audio:
            native_hz = audio.samplerate
            span = round(window_s * native_hz)
            for block in _blocks(windows, window_s):
                first = round(block[0].start_s * native_hz)
                audio.seek(min(first, audio.frames))
                samples = audio.read(round(block[-1].start_s * native_hz) + span - first, dtype="float32", always_2d=True)
                mono = samples.mean(axis=1)
                for window in block:
                    offset = round(window.start_s * native_hz) - first
                    if offset >= mono.size:  # the header promised more audio than the file holds
                        raise ends_before(path, window.start_s, (first + mono.size) / native_hz)
                    clip = resample_checked(mono[offset : offset + span], native_hz, sample_rate_hz, path)
                    yield fit_length(clip, length)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(path, err) from None


def _blocks(windows: list[Window], window_s: float) -> Iterator[list[Window]]:
    """Consecutive runs of windows whose audio spans at most :data:`BLOCK_S` (at least one window each)."""
    block: list[Window] = []
    for window in windows:
        if block and window.start_s + window_s - block[0].start_s > BLOCK_S:
            yield block
            block = []
        block.append(window)
    if block:
        yield block
