"""Recognise the form of a dataset path and read it into a :class:`~mix2.data.clips.ClipTable`.

Example:
    >>> from mix2.config import DataConfig
    >>> table = read_source(DataConfig(source="chorus"), cache_dir)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mix2.config import CHORUS, DataConfig
from mix2.data.anuraset import is_anuraset_folder, read_anuraset
from mix2.data.chorus import write_chorus
from mix2.data.clips import ClipTable
from mix2.data.events import is_events_folder, read_events_folder
from mix2.data.multihot import read_multihot
from mix2.errors import input_error


def read_source(data: DataConfig, cache_dir: Path) -> ClipTable:
    """Read ``data.source``: the built-in chorus, an AnuraSet folder, an events folder or a multi-hot CSV."""
    if data.source == CHORUS:
        folder = write_chorus(cache_dir / "chorus", seed=data.chorus_seed, n_recordings=data.chorus_recordings)
        table = read_events_folder(folder, data.window_s, data.hop_s, data.min_overlap_s)
        return replace(table, name=CHORUS)
    path = Path(data.source)
    if not path.exists():
        raise input_error(path, "no such file or folder")
    if path.is_file() and path.suffix.lower() == ".csv":
        return read_multihot(path)
    if is_anuraset_folder(path):
        return read_anuraset(path, data.variant)
    if is_events_folder(path):
        return read_events_folder(path, data.window_s, data.hop_s, data.min_overlap_s)
    raise input_error(
        path,
        "not a dataset: expected an AnuraSet folder (metadata.csv and audio/), an events folder "
        "(annotations.csv, recordings.csv or Raven *.selections.txt) or a multi-hot .csv table",
    )
