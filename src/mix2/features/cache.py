"""The on-disk feature cache: log-mel features computed once, then read as float16.

A clip's entry is keyed by its audio file (resolved path, size and modification time), its
window, the front-end settings and the reader (:data:`READER`), so changing any of them
computes fresh features, and later epochs and later runs never decode the audio again. Entries
are written to a temporary file and renamed, so several processes may fill and read one cache,
and a killed run never leaves a broken entry. A filled cache is only read: many processes (the GPUs of one run, the jobs of a
cluster) may share it, on a read-only file system too.

Example:
    >>> cache = FeatureCache(tempfile.mkdtemp(), FeatureConfig())  # doctest: +SKIP
    >>> usable, failures = extract_features(table, cache)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from mix2.config import FeatureConfig
from mix2.data.audio import read_windows
from mix2.data.clips import ClipTable
from mix2.errors import Mix2Error, input_error
from mix2.features.frontend import FrontEnd
from mix2.files import own_partial

EXTRACTION_BATCH = 32
READER = "read_windows"
"""How the cached clips were read, part of the cache's key: features cut another way are not reused."""


class UnwritableCache(Mix2Error):
    """The cache lacks features and its folder cannot be written: a problem of the cache, not of a recording."""


class FeatureCache:
    """Float16 log-mel features under ``root``, one ``.npy`` file per clip."""

    def __init__(self, root: str | Path, features: FeatureConfig) -> None:
        self.features = features
        settings = json.dumps({**features.logmel_settings(), "reader": READER}, sort_keys=True)
        self.folder = Path(root) / hashlib.sha256(settings.encode()).hexdigest()[:16]

    def path(self, audio: Path, start_s: float, clip_s: float) -> Path:
        """Where the features of the ``clip_s`` seconds of ``audio`` from ``start_s`` live."""
        if not audio.is_file():
            raise input_error(audio, "no such audio file")
        stat = audio.stat()
        identity = json.dumps([str(audio.resolve()), stat.st_size, stat.st_mtime_ns, round(start_s, 6), round(clip_s, 6)])
        key = hashlib.sha256(identity.encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    @staticmethod
    def write(path: Path, features: np.ndarray) -> None:
        """Store ``features`` (``(n_mels, frames)``) atomically as float16."""
        with contextlib.ExitStack() as entry:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = entry.enter_context(own_partial(path))  # several processes may fill one cache
            except OSError as err:
                raise UnwritableCache(
                    f"{path.parent.parent}: the feature cache lacks clips and cannot be written ({err.strerror}); fill it "
                    "first with one process that may write (mix2 train ... --prepare-only), or set MIX2_CACHE_DIR to a writable folder"
                ) from None
            with partial.open("wb") as stream:
                np.save(stream, features.astype(np.float16))


def extract_features(
    table: ClipTable,
    cache: FeatureCache,
    clip_s: float,
    progress: bool = True,
    device: torch.device | str = "cpu",
    label: str = "features",
) -> tuple[list[Path | None], list[tuple[str, str]]]:
    """Make sure every clip of ``table`` is in ``cache``, decoding each audio file once.

    Every clip is ``clip_s`` long from its ``start_s``: a longer clip is cropped and a shorter
    one, or one that runs past the end of its recording, is zero-padded, so that all features
    share one shape ``(n_mels, frames)``. A clip that starts where the audio has already ended
    (a truncated file, or wrong times in the table) fails its whole file.

    Audio is decoded and resampled on the CPU; the log-mel runs on ``device`` (a GPU, where
    training runs on one). Returns the cache path of each clip (``None`` where its audio could
    not be read) and the failures as ``(file, reason)``. A run goes on past unreadable files;
    they are listed. ``label`` names the progress bar (over audio files).
    """
    frontend = FrontEnd(cache.features, device)
    paths: list[Path | None] = [None] * len(table)
    failures: list[tuple[str, str]] = []
    by_file = table.clips.groupby("file", sort=False).indices
    for file, rows in tqdm(by_file.items(), desc=label, unit="file", disable=not progress):
        audio_path = table.root / file
        try:
            starts = table.clips["start_s"].to_numpy()[rows]
            targets = [cache.path(audio_path, start_s, clip_s) for start_s in starts]
            todo = [(start_s, p) for start_s, p in zip(starts, targets) if not p.is_file()]
            if todo:
                _compute(audio_path, todo, clip_s, frontend, cache.features.sample_rate_hz)
        except UnwritableCache:
            raise
        except Mix2Error as err:
            failures.append((file, str(err).removeprefix(f"{audio_path}: ")))
            continue
        for i, p in zip(rows, targets):
            paths[i] = p
    return paths, failures


def _compute(audio_path: Path, todo: list[tuple[float, Path]], clip_s: float, frontend: FrontEnd, sample_rate_hz: int) -> None:
    """Read the clips in ``todo`` from ``audio_path`` through :func:`read_windows` (as predict does) and cache each."""
    todo = sorted(todo, key=lambda clip: clip[0])
    clips = read_windows(audio_path, [start_s for start_s, _ in todo], clip_s, sample_rate_hz)
    for begin in range(0, len(todo), EXTRACTION_BATCH):
        batch = todo[begin : begin + EXTRACTION_BATCH]
        audio = np.stack([next(clips) for _ in batch])
        features = frontend.stored(torch.from_numpy(audio)).cpu().numpy()
        for (_, path), clip_features in zip(batch, features):
            FeatureCache.write(path, clip_features)
