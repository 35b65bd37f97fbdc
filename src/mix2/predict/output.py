"""The output folder of a prediction: its resumable state, its tables and its Raven selection tables."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

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


class JobFolder:
    """The resumable output folder of a job over recordings (``mix2 predict``, ``mix2 embed``).

    ``settings`` are written to ``settings_file`` on the first call and checked on every later
    one, so that a re-run with other settings is refused rather than mixed into the same
    folder. Each finished recording's output is one file under ``parts/``, written atomically,
    then listed in ``done.jsonl``; a listed recording is not done again.
    """

    def __init__(
        self, folder: Path, settings_file: str, settings: dict, record: dict, holds: str, earlier: dict | None = None
    ) -> None:
        """``record``: what is written beside ``settings`` but never checked (the checkpoint's path);
        ``holds``: what the folder holds, for the error that refuses other settings ("a prediction");
        ``earlier``: the settings of folders written before a setting was stored."""
        self.folder = folder
        self.settings_path = folder / settings_file
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "parts").mkdir(exist_ok=True)
        if self.settings_path.is_file():
            stored = {**(earlier or {}), **json.loads(self.settings_path.read_text())}
            if {k: stored.get(k) for k in settings} != settings:
                changed = [k for k in settings if stored.get(k) != settings[k]]
                flags = [RESUME_FLAGS[k](stored[k]) for k in changed if k in RESUME_FLAGS]
                again = f"; to go on, {' and '.join(flags)}" if len(flags) == len(changed) else ""
                raise input_error(
                    self.settings_path,
                    f"this folder holds {holds} with other settings ({', '.join(changed)}); use a new folder{again}",
                )
        else:
            write_text(self.settings_path, json.dumps({**settings, **record}, indent=2))

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

    def record_part(self, path: Path, suffix: str, write: Callable[[Path], None]) -> str:
        """Write one recording's part with ``write(file)``, atomically, then list it in ``done.jsonl``; returns its name."""
        part = hashlib.sha1(str(path).encode()).hexdigest()[:16] + suffix
        with atomic_path(self.folder / "parts" / part) as partial:
            write(partial)
        done_path = self.folder / "done.jsonl"
        # A line a kill cut short has no newline: start on a line of our own, or this one is lost with it.
        cut_short = done_path.is_file() and done_path.stat().st_size > 0 and _last_byte(done_path) != b"\n"
        with done_path.open("a") as done:
            done.write(("\n" if cut_short else "") + json.dumps({"file": str(path), "part": part}) + "\n")
            done.flush()
            os.fsync(done.fileno())
        return part

    def write_failures(self, recordings: list[Path], failures: dict[int, str]) -> None:
        rows = [(printable(recordings[i]), reason) for i, reason in sorted(failures.items())]
        write_text(self.folder / "failures.csv", pd.DataFrame(rows, columns=["file", "reason"]).to_csv(index=False))

    def finish(self, listing: list[Path], **facts: float) -> None:
        """Record in the settings file that the job finished, over which listing, with ``facts``."""
        record = json.loads(self.settings_path.read_text())
        record.update(finished=True, listing_sha1=listing_digest(listing), listed=len(listing), **facts)
        write_text(self.settings_path, json.dumps(record, indent=2))


def job_settings(checkpoint: str | Path, hop_s: float, shard: tuple[int, int] | None, **settings: object) -> dict:
    """What a job over recordings records and checks: the checkpoint's digest, the hop, the shard (``"I/N"``, or
    ``None``) and the job's own ``settings``."""
    shard_text = None if shard is None else f"{shard[0]}/{shard[1]}"
    return {"checkpoint_md5": md5sum(checkpoint), "hop_s": hop_s, "shard": shard_text, **settings}


class PredictState(JobFolder):
    """The output folder of a resumable prediction (see the module docstring), settings in ``predict.json``."""

    def __init__(
        self,
        folder: Path,
        checkpoint: str | Path,
        hop_s: float,
        scoring: dict[str, str],
        thresholds: dict[str, float],
        shard: tuple[int, int] | None = None,
    ) -> None:
        settings = job_settings(checkpoint, hop_s, shard, **scoring, thresholds=thresholds)
        super().__init__(folder, "predict.json", settings, {"checkpoint": str(checkpoint)}, "a prediction", EARLIER_SCORING)

    def record(self, path: Path, frame: pd.DataFrame) -> str:
        """Write one recording's scores atomically, then list it in ``done.jsonl``; returns the part's name."""
        return self.record_part(path, ".csv", lambda file: file.write_text(frame.to_csv(index=False, float_format="%.6f")))

    def read_part(self, part: str, classes: list[str]) -> pd.DataFrame:
        frame = pd.read_csv(self.folder / "parts" / part, dtype={"file": str})
        return frame[["file", "start_s", "end_s", *classes]]

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


def _last_byte(path: Path) -> bytes:
    with path.open("rb") as handle:
        handle.seek(-1, os.SEEK_END)
        return handle.read(1)


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


def pyarrow_module() -> ModuleType:
    """pyarrow, with its Parquet writer imported; where it is not installed, a one-line error saying how to install it."""
    try:
        import pyarrow
        import pyarrow.parquet
    except ImportError:
        raise Mix2Error("writing Parquet needs pyarrow: pip install pyarrow") from None
    return pyarrow


def write_parquet(path: Path, scores: pd.DataFrame) -> None:
    pyarrow_module()
    scores.to_parquet(path, index=False)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text)
