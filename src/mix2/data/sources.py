"""Recognise the form of a dataset path and read it into a :class:`~mix2.data.clips.ClipTable`.

Example:
    >>> from mix2.config import DataConfig
    >>> table = read_source(DataConfig(source="chorus"), cache_dir)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mix2.config import CHORUS, DataConfig
from mix2.data import anuraset, multihot  # noqa: F401  (each registers its form)
from mix2.data.chorus import write_chorus
from mix2.data.clips import ClipTable
from mix2.data.events import read_events_folder
from mix2.errors import input_error
from mix2.registry import DATA_FORMATS


def read_source(data: DataConfig, cache_dir: Path) -> ClipTable:
    """Read ``data.source``: the built-in chorus, or a path in the one registered form that recognises it
    (:data:`~mix2.registry.DATA_FORMATS`: an AnuraSet folder, a multi-hot CSV, an events folder)."""
    if data.source == CHORUS:
        folder = write_chorus(cache_dir / "chorus", seed=data.chorus_seed, n_recordings=data.chorus_recordings)
        table = read_events_folder(folder, data.window_s, data.hop_s, data.min_overlap_s)
        return replace(table, name=CHORUS)
    path = Path(data.source)
    if not path.exists():
        raise input_error(path, "no such file or folder")
    formats = [data_format for _, data_format in DATA_FORMATS.entries()]
    recognised = [data_format for data_format in formats if data_format.recognises(path)]
    if len(recognised) > 1:
        forms = " and ".join(f.describe for f in recognised)
        raise input_error(path, f"reads as more than one form of dataset: {forms}; keep one of them in this folder")
    if not recognised:
        expected = f"{', '.join(f.describe for f in formats[:-1])} or {formats[-1].describe}"
        raise input_error(path, f"not a dataset: expected {expected}")
    return recognised[0].read(path, data)
