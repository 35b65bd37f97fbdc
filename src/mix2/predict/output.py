"""The output folder of a prediction: its resumable state, its tables and its Raven selection tables."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pandas as pd

from mix2.data.audio import (
    printable,
)
from mix2.data.events import write_raven_table
from mix2.errors import Mix2Error, input_error
from mix2.files import atomic_path, md5sum
from mix2.predict.shards import listing_digest

EARLIER_SCORING = {"engine": "torch", "windows": "exact"}
"""How folders written before these settings existed were scored."""
RESUME_FLAGS = {
    "precision": lambda value: f"pass --precision {value}",
    "engine": lambda value: f"pass --engine {value}",
    "windows": lambda value: "pass --exact-windows" if value == "exact" else "leave out --exact-windows",
}
"""How to give a stored scoring setting back, for the error that refuses another."""


class PredictState:
    """The output folder of a resumable prediction (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        checkpoint: str | Path,
        hop_s: float,
        scoring: dict[str, str],
        thresholds: dict[str, float],
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "parts").mkdir(exist_ok=True)
        shard_text = None if shard is None else f"{shard[0]}/{shard[1]}"
        settings = {
            "checkpoint_md5": md5sum(checkpoint),
            "hop_s": hop_s,
            **scoring,
            "shard": shard_text,
            "thresholds": thresholds,
        }
        settings_path = folder / "predict.json"
        if settings_path.is_file():
            stored = {**EARLIER_SCORING, **json.loads(settings_path.read_text())}
            if {k: stored.get(k) for k in settings} != settings:
                changed = [k for k in settings if stored.get(k) != settings[k]]
                flags = [RESUME_FLAGS[k](stored[k]) for k in changed if k in RESUME_FLAGS]
                again = f"; to go on, {' and '.join(flags)}" if len(flags) == len(changed) else ""
                raise input_error(
                    settings_path,
                    f"this folder holds a prediction with other settings ({', '.join(changed)}); use a new folder{again}",
                )
        else:
            write_text(settings_path, json.dumps({**settings, "checkpoint": str(checkpoint)}, indent=2))

    def done(self) -> dict[str, str]:
        """Recording path -> its part file, for every recording finished before."""
        done_path = self.folder / "done.jsonl"
        finished = {}
        if done_path.is_file():
            for line in done_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that recording is redone
                    continue
                if (self.folder / "parts" / entry["part"]).is_file():
                    finished[entry["file"]] = entry["part"]
        return finished

    def failures(self, recordings: list[Path]) -> list[tuple[int, str]]:
        """Failures recorded before, for the recordings still asked for (they are not retried)."""
        path = self.folder / "failures.csv"
        if not path.is_file():
            return []
        known = dict(pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False, name=None))
        return [(i, known[printable(p)]) for i, p in enumerate(recordings) if printable(p) in known]

    def record(self, path: Path, frame: pd.DataFrame) -> str:
        """Write one recording's scores atomically, then list it in ``done.jsonl``; returns the part's name."""
        part = hashlib.sha1(str(path).encode()).hexdigest()[:16] + ".csv"
        write_text(self.folder / "parts" / part, frame.to_csv(index=False, float_format="%.6f"))
        with (self.folder / "done.jsonl").open("a") as done:
            done.write(json.dumps({"file": str(path), "part": part}) + "\n")
            done.flush()
            os.fsync(done.fileno())
        return part

    def read_part(self, part: str, classes: list[str]) -> pd.DataFrame:
        frame = pd.read_csv(self.folder / "parts" / part, dtype={"file": str})
        return frame[["file", "start_s", "end_s", *classes]]

    def write_failures(self, recordings: list[Path], failures: dict[int, str]) -> None:
        rows = [(printable(recordings[i]), reason) for i, reason in sorted(failures.items())]
        write_text(self.folder / "failures.csv", pd.DataFrame(rows, columns=["file", "reason"]).to_csv(index=False))

    def write_results(
        self,
        scores: pd.DataFrame,
        found: pd.DataFrame,
        recordings: list[Path],
        failures: dict[int, str],
        parquet: bool,
        max_frequency_hz: float,
    ) -> None:
        write_text(self.folder / "scores.csv", scores.to_csv(index=False, float_format="%.6f"))
        write_text(self.folder / "detections.csv", found.to_csv(index=False, float_format="%.6f"))
        if parquet:
            write_parquet(self.folder / "scores.parquet", scores)
        readable = [path for i, path in enumerate(recordings) if i not in failures]
        write_raven_tables(self.folder / "raven", found, readable, max_frequency_hz)

    def finish(self, listing: list[Path], max_frequency_hz: float) -> None:
        """Record in ``predict.json`` that the job finished, over which listing."""
        settings_path = self.folder / "predict.json"
        record = json.loads(settings_path.read_text())
        record.update(finished=True, listing_sha1=listing_digest(listing), listed=len(listing), max_frequency_hz=max_frequency_hz)
        write_text(settings_path, json.dumps(record, indent=2))


def write_raven_tables(folder: Path, found: pd.DataFrame, recordings: list[Path], max_frequency_hz: float) -> None:
    """One Raven selection table per recording of ``recordings`` (empty where it has no detection).

    Each table's ``Begin File`` is the recording's path under the folder that holds them all,
    so that same-named recordings of different sites stay apart (``site1/0001.wav``).
    """
    names = _raven_names(recordings)
    by_file = dict(tuple(found.groupby("file", sort=False)))
    begin_files = relative_paths(recordings)
    for name, path, begin_file in zip(names, recordings, begin_files):
        write_raven_table(folder / name, by_file.get(str(path), found.iloc[:0]), max_frequency_hz, begin_file)


def relative_paths(recordings: list[Path]) -> list[str]:
    """Each recording's path under the deepest folder that holds them all (its name, for one recording)."""
    if not recordings:
        return []
    absolute = [os.path.abspath(p) for p in recordings]
    base = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [Path(os.path.relpath(p, base)).as_posix() for p in absolute]


def _raven_names(recordings: list[Path]) -> list[str]:
    """``<stem>.selections.txt`` per recording; where stems repeat, ``<stem>-1``, ``<stem>-2``, ..."""
    stems = [p.stem for p in recordings]
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}-{seen[stem]}.selections.txt" if stems.count(stem) > 1 else f"{stem}.selections.txt")
    return names


def write_parquet(path: Path, scores: pd.DataFrame) -> None:
    try:
        scores.to_parquet(path, index=False)
    except ImportError:
        raise Mix2Error("writing Parquet needs pyarrow: pip install pyarrow") from None


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text)
