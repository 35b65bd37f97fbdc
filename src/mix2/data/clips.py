"""The clip table: one row per training or test window, whatever form the data came in.

Every reader (AnuraSet, events, multi-hot, the synthetic chorus) returns a :class:`ClipTable`;
everything downstream (features, training, evaluation) reads only this table.

Example:
    >>> import numpy as np, pandas as pd
    >>> table = ClipTable(
    ...     clips=pd.DataFrame({"file": ["a.wav", "a.wav"], "start_s": [0.0, 1.0],
    ...                         "end_s": [3.0, 4.0], "group": ["a", "a"], "split": ["train", "train"]}),
    ...     labels=np.array([[1, 0], [1, 1]], dtype=np.uint8), classes=["frog", "toad"], root=".")
    >>> table.to_multihot().loc[("a.wav", 1.0, 4.0)].tolist()
    [1, 1]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from mix2.errors import input_error

SPLITS = ("train", "val", "test")
CLIP_COLUMNS = ("file", "start_s", "end_s", "group", "split")


@dataclass
class ClipTable:
    """Clips with multi-hot labels.

    Attributes:
        clips: one row per clip with columns ``file`` (path relative to ``root``, or absolute),
            ``start_s`` and ``end_s`` (the window inside that file), ``group`` (the recording
            the clip was cut from: splits never put one group on both sides) and ``split``
            (``train``, ``val``, ``test``, or empty where a split is still to be drawn).
        labels: ``(clips, classes)`` uint8 multi-hot matrix.
        classes: class names, in label-column order.
        root: folder that relative paths in ``file`` resolve against.
        class_groups: fixed frequent / common / rare class lists (AnuraSet's), or ``None`` to
            rank classes by training count.
        name: short name of the data source, used in run names.
    """

    clips: pd.DataFrame
    labels: np.ndarray
    classes: list[str]
    root: Path | str
    class_groups: dict[str, list[str]] | None = None
    name: str = "data"
    failures: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        self.clips = self.clips.reset_index(drop=True)
        self.labels = np.asarray(self.labels, dtype=np.uint8)
        missing = [c for c in CLIP_COLUMNS if c not in self.clips.columns]
        if missing:
            raise ValueError(f"clip table lacks columns {missing}")
        if self.labels.shape != (len(self.clips), len(self.classes)):
            raise ValueError(f"labels have shape {self.labels.shape}, expected {(len(self.clips), len(self.classes))}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError("class names must be unique")

    def __len__(self) -> int:
        return len(self.clips)

    def path(self, index: int) -> Path:
        """Absolute path of clip ``index``'s audio file."""
        return self.root / self.clips.at[index, "file"]

    def select(self, mask: np.ndarray | pd.Series) -> ClipTable:
        """The clips where ``mask`` is true."""
        mask = np.asarray(mask, dtype=bool)
        return replace(self, clips=self.clips[mask].reset_index(drop=True), labels=self.labels[mask])

    def split(self, name: str) -> ClipTable:
        """The clips of split ``name`` (``train``, ``val`` or ``test``)."""
        return self.select(self.clips["split"].to_numpy() == name)

    def drop_classes(self, names: list[str]) -> ClipTable:
        """The same clips without the label columns in ``names``."""
        keep = [i for i, c in enumerate(self.classes) if c not in set(names)]
        return replace(self, labels=self.labels[:, keep], classes=[self.classes[i] for i in keep])

    def class_counts(self) -> np.ndarray:
        """Positives per class, shape ``(classes,)``."""
        return self.labels.sum(axis=0).astype(np.int64)

    def to_multihot(self) -> pd.DataFrame:
        """OpenSoundscape's convention: class columns indexed by ``(file, start_s, end_s)``."""
        index = pd.MultiIndex.from_frame(self.clips[["file", "start_s", "end_s"]])
        return pd.DataFrame(self.labels, index=index, columns=self.classes)


def require_columns(frame: pd.DataFrame, columns: list[str] | tuple[str, ...], path: str | Path) -> None:
    """Raise a one-line error naming ``path`` when ``frame`` lacks any of ``columns``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise input_error(path, f"missing column(s) {', '.join(missing)}; found {', '.join(map(str, frame.columns))}")


def read_csv(path: str | Path, **kwargs) -> pd.DataFrame:
    """``pandas.read_csv`` with one-line errors that name the file."""
    path = Path(path)
    if not path.is_file():
        raise input_error(path, "no such file")
    try:
        return pd.read_csv(path, **kwargs)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise input_error(path, f"not a readable table ({str(err).splitlines()[0]})") from None


def relative_audio_path(root: Path, file: str, table: str | Path) -> str:
    """Check that ``file`` (from ``table``) stays inside ``root``; return it relative to ``root``.

    The check is on the path as written (``..`` and absolute paths), not on where symbolic links
    point, so a data folder may be made of links to the audio.
    """
    base = os.path.abspath(root)
    full = os.path.normpath(os.path.join(base, str(file)))
    if os.path.commonpath([base, full]) != base:
        raise input_error(table, f"path '{file}' points outside the data folder {base}")
    return Path(os.path.relpath(full, base)).as_posix()


def require_nonempty(table: ClipTable, origin: str | Path) -> ClipTable:
    """Raise when ``table`` holds no clips."""
    if len(table) == 0:
        raise input_error(origin, "the dataset holds no clips")
    return table


def check_times(frame: pd.DataFrame, start: str, end: str, path: str | Path) -> None:
    """Start and end times must be finite numbers with ``0 <= start < end``."""
    for column in (start, end):
        values = pd.to_numeric(frame[column], errors="coerce")
        bad = ~np.isfinite(values.to_numpy(dtype=float))
        if bad.any():
            row = int(bad.argmax())
            cell = frame[column].iloc[row]
            shown = "empty" if pd.isna(cell) else repr(str(cell))
            raise input_error(path, f"row {row + 2}: '{column}' is not a finite number ({shown})")
    bad = (frame[start] < 0) | (frame[end] <= frame[start])
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise input_error(
            path, f"row {row + 2}: times must satisfy 0 <= {start} < {end} (got {frame[start].iloc[row]}, {frame[end].iloc[row]})"
        )


def drop_duplicate_clips(table: ClipTable, origin: str | Path) -> ClipTable:
    """Keep one row of clips listed more than once with the same labels; refuse ones listed with different labels.

    Row numbers in the error count the header as row 1, as a spreadsheet does, and assume
    ``table`` has one clip per row of ``origin``.
    """
    key = table.clips[["file", "start_s", "end_s"]].astype(str).agg("|".join, axis=1)
    repeated = key.duplicated(keep=False).to_numpy()
    if not repeated.any():
        return table
    labels = pd.Series([row.tobytes() for row in table.labels])
    conflicting = repeated & (labels.groupby(key.to_numpy()).transform("nunique") > 1).to_numpy()
    if conflicting.any():
        rows = np.flatnonzero(key.to_numpy() == key[np.flatnonzero(conflicting)[0]])[:2] + 2
        clip = table.clips.iloc[rows[0] - 2]
        raise input_error(
            origin,
            f"rows {rows[0]} and {rows[1]} give the clip {clip['file']} {clip['start_s']}-{clip['end_s']} s different labels",
        )
    return table.select(~key.duplicated().to_numpy())


def without_missing_audio(table: ClipTable) -> ClipTable:
    """The clips whose audio file exists; the files that do not are added to ``failures``."""
    present = np.array([(table.root / f).is_file() for f in table.clips["file"]], dtype=bool)
    missing = sorted(set(table.clips["file"][~present]))
    return replace(table.select(present), failures=table.failures + [(f, "no such audio file") for f in missing])


def check_binary(values: np.ndarray, path: str | Path, what: str) -> np.ndarray:
    """Labels must be 0 or 1; returns them as uint8."""
    values = np.asarray(values)
    if not np.isin(values, (0, 1)).all():
        raise input_error(path, f"{what} must hold only 0 and 1")
    return values.astype(np.uint8)


__all__ = [
    "SPLITS",
    "ClipTable",
    "check_binary",
    "check_times",
    "drop_duplicate_clips",
    "read_csv",
    "relative_audio_path",
    "require_columns",
    "require_nonempty",
    "without_missing_audio",
]
