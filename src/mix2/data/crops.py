"""Random crops over whole recordings, in pairs of views, for self-supervised pretraining.

Pretraining needs no labels and no clip table: :func:`list_recordings` finds the audio under
some folders and reads each one's duration from its header (an unreadable file goes to the
failures, with the reason). :class:`ViewPairs` then draws, for item ``i`` of epoch ``e``, a crop
of one recording (chosen with probability proportional to its duration, so every second of
audio is as likely as any other) and cuts two views from it: windows of the run's length
whose starts lie up to ``max_view_offset_s`` apart. Each view gets its own background, a window
of another recording added at ``lambda`` times the view's RMS with ``lambda ~ U(0,
max_background_rms_ratio)``: two calls heard over two other sites' noise are still the same
calls, which is what the network should learn to say.

All draws of an item come from one generator seeded with ``(seed, epoch, i)``
(:meth:`ViewPairs.draw`), and are applied deterministically (:meth:`ViewPairs.views`), so a run
resumed at epoch ``e`` sees exactly the crops the uninterrupted one saw, whatever the number of
data-loading processes. Audio is read a window at a time with soundfile's partial reads, so
memory stays bounded however long the recordings.

Example:
    >>> recordings, failures = list_recordings(["../shared/data/nips4b_unlabelled"])  # doctest: +SKIP
    >>> pairs = ViewPairs(recordings, window_s=3.0, sample_rate_hz=16_000, crops=2048, seed=0)  # doctest: +SKIP
    >>> first, second = pairs[0]  # doctest: +SKIP
    >>> first.shape, second.shape  # doctest: +SKIP
    ((48000,), (48000,))
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import Dataset, Sampler

from mix2.data.audio import duration_s, find_audio, fit_length, read_audio
from mix2.distributed import BatchShares
from mix2.errors import Mix2Error, input_error


@dataclass(frozen=True)
class Recording:
    """An audio file and its duration."""

    path: Path
    duration_s: float


def list_recordings(folders: list[str | Path]) -> tuple[list[Recording], list[tuple[str, str]]]:
    """The readable recordings below ``folders`` (or files), and ``(file, reason)`` for the others."""
    recordings, failures = [], []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise input_error(folder, "no such folder or file")
        for path in find_audio(folder) if folder.is_dir() else [folder]:
            try:
                length_s = duration_s(path)
            except Mix2Error as err:
                failures.append((str(path), str(err).removeprefix(f"{path}: ")))
                continue
            if length_s > 0:
                recordings.append(Recording(path, length_s))
            else:
                failures.append((str(path), "the audio file holds no samples"))
    return recordings, failures


@dataclass(frozen=True)
class PairDraw:
    """Everything random about one item: the recording and crop start, each view's offset in the crop,
    and each view's background (recording, start, ratio of its RMS to the view's)."""

    recording: int
    start_s: float
    view_offsets_s: tuple[float, float]
    backgrounds: tuple[tuple[int, float, float], tuple[int, float, float]]


class ViewPairs(Dataset):
    """Item ``epoch * crops + i``: two views ``(samples,)`` float32 of crop ``i`` of ``epoch`` (see the module docstring).

    Args:
        recordings: from :func:`list_recordings`; at least two, so that a background comes
            from another recording.
        window_s, sample_rate_hz: each view's length and rate.
        crops: items per epoch.
        seed: the run's; ``(seed, stream, epoch, i)`` seeds item ``i`` of ``epoch``.
        stream: 0 for training, another number for a set of its own (validation's), apart from training's.
        max_view_offset_s: the views' starts lie up to this far apart (0: the same window twice).
        max_background_rms_ratio: the largest background level, as a ratio of RMS to the view's (0: none).
    """

    def __init__(
        self,
        recordings: list[Recording],
        window_s: float,
        sample_rate_hz: int,
        crops: int,
        seed: int,
        max_view_offset_s: float = 1.0,
        max_background_rms_ratio: float = 0.5,
        stream: int = 0,
    ) -> None:
        if len(recordings) < 2:
            raise Mix2Error(f"pretraining needs at least 2 readable recordings, found {len(recordings)}")
        self.recordings = recordings
        self.window_s, self.sample_rate_hz, self.crops, self.seed, self.stream = window_s, sample_rate_hz, crops, seed, stream
        self.max_view_offset_s, self.max_background_rms_ratio = max_view_offset_s, max_background_rms_ratio
        durations = np.array([r.duration_s for r in recordings])
        self.weights = durations / durations.sum()

    def __len__(self) -> int:
        return self.crops

    def draw(self, item: int) -> PairDraw:
        """The random choices of ``item`` (``epoch * crops + i``), from one generator seeded with ``(seed, stream, epoch, i)``."""
        epoch, index = divmod(item, self.crops)
        rng = np.random.default_rng([self.seed, self.stream, epoch, index])
        recording = int(rng.choice(len(self.recordings), p=self.weights))
        span_s = self.window_s + self.max_view_offset_s
        start_s = float(rng.uniform(0, max(0.0, self.recordings[recording].duration_s - span_s)))
        offsets = (float(rng.uniform(0, self.max_view_offset_s)), float(rng.uniform(0, self.max_view_offset_s)))
        backgrounds = []
        for _ in range(2):
            other = int(rng.choice(len(self.recordings) - 1, p=_without(self.weights, recording)))
            other += other >= recording  # any recording but the crop's own
            other_start_s = float(rng.uniform(0, max(0.0, self.recordings[other].duration_s - self.window_s)))
            backgrounds.append((other, other_start_s, float(rng.uniform(0, self.max_background_rms_ratio))))
        return PairDraw(recording, start_s, offsets, (backgrounds[0], backgrounds[1]))

    def views(self, draw: PairDraw) -> tuple[np.ndarray, np.ndarray]:
        """The two views ``draw`` describes: its crop's windows, each with its background added."""
        rate, window = self.sample_rate_hz, round(self.window_s * self.sample_rate_hz)
        crop = self._read(draw.recording, draw.start_s, self.window_s + self.max_view_offset_s)
        views = []
        for offset_s, (other, other_start_s, ratio) in zip(draw.view_offsets_s, draw.backgrounds):
            start = round(offset_s * rate)
            view = crop[start : start + window]
            if ratio > 0:
                background = self._read(other, other_start_s, self.window_s)
                view = view + ratio * _rms(view) / max(_rms(background), 1e-8) * background
            views.append(view.astype(np.float32))
        return views[0], views[1]

    def _read(self, recording: int, start_s: float, length_s: float) -> np.ndarray:
        audio = read_audio(self.recordings[recording].path, self.sample_rate_hz, start_s, length_s)
        return fit_length(audio, round(length_s * self.sample_rate_hz))

    def __getitem__(self, item: int) -> tuple[np.ndarray, np.ndarray]:
        return self.views(self.draw(item))


def _without(weights: np.ndarray, index: int) -> np.ndarray:
    rest = np.delete(weights, index)
    return rest / rest.sum()


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


class EpochItems(Sampler[int]):
    """The items of one epoch of a :class:`ViewPairs`: ``epoch * crops + i`` for ``i`` in order.

    Lightning calls :meth:`set_epoch` before each epoch; a fixed ``epoch`` (validation's) never
    changes. With ``processes > 1`` the items are cut into global batches of ``batch_size`` (a
    last, partial one is dropped) and process ``rank`` takes its even share of each
    (:class:`~mix2.distributed.BatchShares`), so the processes together take the batches one
    process would.

    Example:
        >>> list(EpochItems(4, epoch=1))
        [4, 5, 6, 7]
        >>> [list(EpochItems(4, epoch=1, batch_size=4, rank=rank, processes=2)) for rank in (0, 1)]
        [[4, 5], [6, 7]]
    """

    def __init__(
        self,
        crops: int,
        epoch: int = 0,
        follow_epochs: bool = True,
        batch_size: int | None = None,
        rank: int = 0,
        processes: int = 1,
    ) -> None:
        self.shares = BatchShares(batch_size, rank, processes)
        self.crops, self.epoch, self.follow_epochs = crops, epoch, follow_epochs

    def set_epoch(self, epoch: int) -> None:
        if self.follow_epochs:
            self.epoch = epoch

    def __len__(self) -> int:
        return self.shares.length(self.crops)

    def __iter__(self) -> Iterator[int]:
        return iter(self.shares.of(list(range(self.epoch * self.crops, (self.epoch + 1) * self.crops))))
