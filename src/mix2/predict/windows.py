"""Which recordings a predict reads, and which windows each gives (their audio: :func:`mix2.data.audio.read_windows`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mix2.data.audio import AUDIO_EXTENSIONS, find_audio
from mix2.data.events import TIME_TOLERANCE_S, window_starts
from mix2.errors import Mix2Error, input_error


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
