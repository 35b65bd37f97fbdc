"""A multi-hot table -> clips (OpenSoundscape's convention).

The CSV has ``file``, ``start_s``, ``end_s`` (OpenSoundscape's ``start_time`` and ``end_time``
are accepted too) and one 0/1 column per class. Optional columns: ``split`` (train, val or
test) and ``group`` (the recording a clip belongs to, for splitting; defaults to ``file``).
Paths are relative to the table's folder.

Example:
    >>> table = read_multihot("labels.csv")  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from mix2.data.clips import (
    SPLITS,
    ClipTable,
    check_binary,
    check_times,
    drop_duplicate_clips,
    read_csv,
    relative_audio_path,
    require_columns,
    require_nonempty,
    without_missing_audio,
)
from mix2.data.formats import DATA_FORMATS, DataFormat
from mix2.errors import input_error

OPENSOUNDSCAPE_NAMES = {"start_time": "start_s", "end_time": "end_s"}
OPTIONAL_COLUMNS = ("split", "group")


def read_multihot(path: str | Path) -> ClipTable:
    """Read a multi-hot CSV table into a :class:`ClipTable`; missing audio files are listed in ``failures``.

    A clip listed twice with the same labels is kept once; with different labels, it is an error.
    """
    path = Path(path)
    table = read_csv(path, dtype={"file": str}).rename(columns=OPENSOUNDSCAPE_NAMES)
    if table.columns.duplicated().any():
        twice = table.columns[table.columns.duplicated()][0]
        raise input_error(path, f"two columns give '{twice}' (OpenSoundscape's start_time and end_time are start_s and end_s)")
    require_columns(table, ["file", "start_s", "end_s"], path)
    check_times(table, "start_s", "end_s", path)
    classes = [c for c in table.columns if c not in ("file", "start_s", "end_s", *OPTIONAL_COLUMNS)]
    if not classes:
        raise input_error(path, "no class columns after file, start_s, end_s")
    labels = check_binary(table[classes].to_numpy(), path, "class columns")
    root = path.parent
    files = [relative_audio_path(root, f, path) for f in table["file"]]
    split = table["split"].fillna("").astype(str) if "split" in table else pd.Series([""] * len(table))
    bad = sorted(set(split) - set(SPLITS) - {""})
    if bad:
        raise input_error(path, f"'split' must be one of {', '.join(SPLITS)}; found '{bad[0]}'")
    clips = pd.DataFrame(
        {
            "file": files,
            "start_s": table["start_s"].astype(float),
            "end_s": table["end_s"].astype(float),
            "group": table["group"].astype(str) if "group" in table else files,
            "split": split.to_numpy(),
        }
    )
    table = ClipTable(clips=clips, labels=labels, classes=classes, root=root, name=path.stem)
    return require_nonempty(without_missing_audio(drop_duplicate_clips(table, path)), path)


DATA_FORMATS.register("multihot")(
    DataFormat(
        "a multi-hot .csv table",
        lambda path: path.is_file() and path.suffix.lower() == ".csv",
        lambda path, data: read_multihot(path),
    )
)
