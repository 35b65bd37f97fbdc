"""Recordings with time-stamped sound events -> fixed windows -> clips.

An events folder holds:

- ``recordings.csv``: ``file, duration_s`` (optional: without it, every audio file below the
  folder is a recording and its duration is read from its header);
- ``annotations.csv``: ``file, start_s, end_s, label``, one row per event; or, instead, Raven
  selection tables (``*.selections.txt``), one per recording, matched by file name stem or by
  their ``Begin File`` column;
- ``classes.csv`` (optional): a ``label`` column listing the classes in order; without it the
  classes are the labels seen in the events, sorted.

Each recording is cut into windows (default 3 s long every 1 s, as in AnuraSet); a window is
labelled with every event that overlaps it by at least ``min_overlap_s`` seconds, or by the
whole event where the event is shorter than that. A recording with no events gives all-negative
windows. See :func:`window_starts` for recordings shorter than a window and the last window.

Example:
    >>> window_starts(duration_s=5.0, window_s=3.0, hop_s=1.0).tolist()
    [0.0, 1.0, 2.0]
    >>> window_starts(duration_s=1.5, window_s=3.0, hop_s=1.0).tolist()
    [0.0]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mix2.data.audio import NOT_UTF8, duration_s, find_audio, is_utf8, printable
from mix2.data.clips import (
    ClipTable,
    check_times,
    read_csv,
    relative_audio_path,
    require_columns,
    require_nonempty,
)
from mix2.data.formats import DATA_FORMATS, DataFormat
from mix2.errors import Mix2Error, input_error

RAVEN_SUFFIX = ".selections.txt"
RAVEN_LABEL_COLUMNS = ("Annotation", "Species", "Label", "Class", "label", "species", "class")
TIME_TOLERANCE_S = 1e-6


def is_events_folder(path: Path) -> bool:
    """An events folder has ``annotations.csv``, ``recordings.csv`` or Raven selection tables."""
    return path.is_dir() and (
        (path / "annotations.csv").is_file() or (path / "recordings.csv").is_file() or any(path.rglob(f"*{RAVEN_SUFFIX}"))
    )


def window_starts(duration_s: float, window_s: float, hop_s: float) -> np.ndarray:
    """Start times (s) of the windows cut from a recording of ``duration_s``.

    Windows start every ``hop_s`` and end at or before the recording's end; a tail shorter than
    one hop after the last full window is not covered. A recording shorter than one window gives
    one window at 0, zero-padded at the end when its audio is read.
    """
    if window_s <= 0 or hop_s <= 0:
        raise Mix2Error(f"window_s and hop_s must be positive (got {window_s}, {hop_s})")
    if duration_s <= window_s + TIME_TOLERANCE_S:
        return np.zeros(1)
    count = int(np.floor((duration_s - window_s) / hop_s + TIME_TOLERANCE_S)) + 1
    return np.round(np.arange(count) * hop_s, 6)


def window_labels(
    starts_s: np.ndarray,
    window_s: float,
    events: pd.DataFrame,
    n_classes: int,
    min_overlap_s: float = 0.0,
) -> np.ndarray:
    """Multi-hot labels of windows from the events that overlap them.

    Args:
        starts_s: window start times, shape ``(windows,)``.
        window_s: window length.
        events: ``start_s``, ``end_s`` and ``class_index`` columns, one row per event.
        n_classes: number of label columns.
        min_overlap_s: overlap needed for a label; an event shorter than this needs to overlap
            by its whole length. Any positive overlap counts when 0.

    Returns:
        ``(windows, n_classes)`` uint8.
    """
    labels = np.zeros((len(starts_s), n_classes), dtype=np.uint8)
    if len(events) == 0:
        return labels
    event_start = events["start_s"].to_numpy(dtype=float)[None, :]
    event_end = events["end_s"].to_numpy(dtype=float)[None, :]
    window_start = np.asarray(starts_s, dtype=float)[:, None]
    overlap = np.minimum(window_start + window_s, event_end) - np.maximum(window_start, event_start)
    needed = np.minimum(min_overlap_s, event_end - event_start) - TIME_TOLERANCE_S
    hit = (overlap > 0) & (overlap >= needed)
    windows, event_rows = np.nonzero(hit)
    labels[windows, events["class_index"].to_numpy()[event_rows]] = 1
    return labels


def read_raven_table(path: str | Path) -> pd.DataFrame:
    """A Raven selection table -> ``start_s, end_s, label`` (and ``file`` from ``Begin File``).

    Where a table lists each selection once per view (waveform and spectrogram), only the
    spectrogram rows are kept, so no event counts twice.
    """
    table = read_csv(path, sep="\t")
    require_columns(table, ["Begin Time (s)", "End Time (s)"], path)
    label_column = next((c for c in RAVEN_LABEL_COLUMNS if c in table.columns), None)
    if label_column is None:
        raise input_error(path, f"no label column; expected one of {', '.join(RAVEN_LABEL_COLUMNS)}")
    if "View" in table.columns and table["View"].astype(str).str.startswith("Spectrogram").any():
        table = table[table["View"].astype(str).str.startswith("Spectrogram")]
    events = pd.DataFrame(
        {
            "start_s": table["Begin Time (s)"],
            "end_s": table["End Time (s)"],
            "label": table[label_column].astype(str).str.strip(),
        }
    )
    if "Begin File" in table.columns:
        events["file"] = table["Begin File"].astype(str)
    return events.reset_index(drop=True)


def read_events_folder(
    root: str | Path,
    window_s: float = 3.0,
    hop_s: float = 1.0,
    min_overlap_s: float = 0.0,
) -> ClipTable:
    """Read an events folder (see the module docstring) into windows with multi-hot labels.

    Recordings whose audio file is missing, unreadable, or named in bytes that are not UTF-8 are
    left out and listed in ``failures``. An event that starts after its recording ends is an
    error; one that runs past the end labels the windows up to the end.
    """
    root = Path(root)
    recordings, unlisted = _read_recordings(root)
    events, events_origin = _read_events(root, recordings)
    classes = _read_classes(root, events, events_origin)
    class_index = {c: i for i, c in enumerate(classes)}
    events = events.assign(class_index=events["label"].map(class_index))
    events_by_file = dict(tuple(events.groupby("file")))

    exists = np.array([(root / f).is_file() for f in recordings["file"]])
    failures = unlisted + [(f, "no such audio file") for f in recordings.loc[~exists, "file"]]
    present = exists & recordings["duration_s"].notna().to_numpy()
    rows, labels = [], []
    for file, length_s in zip(recordings["file"][present], recordings["duration_s"][present]):
        starts = window_starts(float(length_s), window_s, hop_s)
        file_events = events_by_file.get(file, events.iloc[:0])
        labels.append(window_labels(starts, window_s, file_events, len(classes), min_overlap_s))
        rows.append(pd.DataFrame({"file": file, "start_s": starts, "end_s": starts + window_s, "group": file, "split": ""}))
    clips = pd.concat(rows, ignore_index=True) if rows else pd.DataFrame(columns=["file", "start_s", "end_s", "group", "split"])
    table = ClipTable(
        clips=clips,
        labels=np.concatenate(labels) if labels else np.zeros((0, len(classes))),
        classes=classes,
        root=root,
        name=root.resolve().name,
        failures=failures,
    )
    return require_nonempty(table, root)


def _read_recordings(root: Path) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """``file, duration_s`` of every recording, and the audio files left out as ``(file, reason)``."""
    listing = root / "recordings.csv"
    if listing.is_file():
        recordings = read_csv(listing, dtype={"file": str})
        require_columns(recordings, ["file", "duration_s"], listing)
        durations = pd.to_numeric(recordings["duration_s"], errors="coerce")
        bad = ~(np.isfinite(durations.to_numpy(dtype=float)) & (durations > 0).to_numpy())
        if bad.any():
            raise input_error(listing, f"row {int(bad.argmax()) + 2}: 'duration_s' must be a positive finite number")
        files = [relative_audio_path(root, f, listing) for f in recordings["file"]]
        recordings = pd.DataFrame({"file": files, "duration_s": durations}).drop_duplicates()
        twice = recordings["file"].duplicated()
        if twice.any():
            raise input_error(listing, f"'{recordings['file'][twice].iloc[0]}' is listed twice with different durations")
        return recordings.reset_index(drop=True), []
    found = find_audio(root)
    if not found:
        raise input_error(root, "no recordings.csv and no audio files (wav, flac, mp3, ogg) in the folder")
    audio = [path for path in found if is_utf8(path)]
    skipped = [(printable(path.relative_to(root)), NOT_UTF8) for path in found if not is_utf8(path)]
    files, durations = [path.relative_to(root).as_posix() for path in audio], []
    for file, path in zip(files, audio):  # an unreadable file keeps its events, and is listed, not windowed
        try:
            durations.append(duration_s(path))
        except Mix2Error as err:
            durations.append(np.nan)
            skipped.append((file, str(err).removeprefix(f"{path}: ")))
    return pd.DataFrame({"file": files, "duration_s": durations}), skipped


def _refuse_events_past_the_end(events: pd.DataFrame, recordings: pd.DataFrame, origin: Path) -> None:
    """An event must start before its recording ends (one that runs past the end is kept, and ends there)."""
    length_s = events["file"].map(dict(zip(recordings["file"], recordings["duration_s"])))
    late = events["start_s"] >= length_s - TIME_TOLERANCE_S
    if late.any():
        row = events[late].iloc[0]
        raise input_error(
            origin,
            f"an event ({row['label']}, {row['start_s']}-{row['end_s']} s) starts after its recording "
            f"'{row['file']}' ends ({length_s[late].iloc[0]:.2f} s); {int(late.sum())} such event(s) in all",
        )


def _read_events(root: Path, recordings: pd.DataFrame) -> tuple[pd.DataFrame, Path]:
    annotations = root / "annotations.csv"
    if annotations.is_file():
        events = read_csv(annotations, dtype={"file": str, "label": str})
        require_columns(events, ["file", "start_s", "end_s", "label"], annotations)
        events["file"] = [relative_audio_path(root, f, annotations) for f in events["file"]]
        origin = annotations
    else:
        events = _read_raven_folder(root, recordings)
        origin = root
    check_times(events, "start_s", "end_s", origin)
    if events["label"].isna().any():
        raise input_error(origin, f"row {int(events['label'].isna().to_numpy().argmax()) + 2}: empty label")
    unknown_files = sorted(set(events["file"]) - set(recordings["file"]))
    if unknown_files:
        raise input_error(origin, f"events for {len(unknown_files)} file(s) not among the recordings, e.g. '{unknown_files[0]}'")
    _refuse_events_past_the_end(events, recordings, origin)
    return events.drop_duplicates(["file", "start_s", "end_s", "label"]).reset_index(drop=True), origin


def _read_raven_folder(root: Path, recordings: pd.DataFrame) -> pd.DataFrame:
    by_stem = {Path(f).name.split(".")[0]: f for f in recordings["file"]}
    by_name = {Path(f).name: f for f in recordings["file"]}
    tables = []
    for path in sorted(root.rglob(f"*{RAVEN_SUFFIX}")):
        events = read_raven_table(path)
        if "file" in events.columns:
            unknown = sorted(set(events["file"]) - set(by_name))
            if unknown:
                raise input_error(path, f"'Begin File' names a recording not in the folder: '{unknown[0]}'")
            events["file"] = events["file"].map(by_name)
        else:
            stem = path.name.split(".")[0]
            if stem not in by_stem:
                raise input_error(path, f"no recording named '{stem}.*' for this selection table")
            events["file"] = by_stem[stem]
        tables.append(events)
    if not tables:
        return pd.DataFrame({"file": [], "start_s": [], "end_s": [], "label": []})
    return pd.concat(tables, ignore_index=True)


def _read_classes(root: Path, events: pd.DataFrame, events_origin: Path) -> list[str]:
    listing = root / "classes.csv"
    if not listing.is_file():
        classes = sorted(events["label"].unique())
        if not classes:
            raise input_error(events_origin, "no events and no classes.csv: there is nothing to learn")
        return classes
    table = read_csv(listing, dtype={"label": str})
    require_columns(table, ["label"], listing)
    classes = table["label"].astype(str).str.strip().tolist()
    if len(set(classes)) != len(classes):
        raise input_error(listing, "a label is listed twice")
    unknown = sorted(set(events["label"]) - set(classes))
    if unknown:
        raise input_error(events_origin, f"unknown label '{unknown[0]}' (not in {listing.name}); {len(unknown)} unknown in all")
    return classes


def write_raven_table(path: Path, found: pd.DataFrame, max_frequency_hz: float, begin_file: str) -> None:
    """A Raven Pro selection table (tab-separated) of one recording's detections; ``begin_file`` names the recording."""
    table = pd.DataFrame(
        {
            "Selection": np.arange(1, len(found) + 1),
            "View": "Spectrogram 1",
            "Channel": 1,
            "Begin Time (s)": found["start_s"].to_numpy(),
            "End Time (s)": found["end_s"].to_numpy(),
            "Low Freq (Hz)": 0.0,
            "High Freq (Hz)": max_frequency_hz,
            "Begin File": begin_file,
            "Species": found["species"].to_numpy(),
            "Score": found["max_score"].round(4).to_numpy(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.6g")


DATA_FORMATS.register("events")(
    DataFormat(
        "an events folder (annotations.csv, recordings.csv or Raven *.selections.txt)",
        is_events_folder,
        lambda path, data: read_events_folder(path, data.window_s, data.hop_s, data.min_overlap_s),
    )
)
