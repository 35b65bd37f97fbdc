"""The output folders of the N shards of one job (a prediction, an embedding), joined into one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from mix2.errors import Mix2Error, input_error
from mix2.predict.embed import write_embeddings
from mix2.predict.output import write_parquet, write_raven_tables, write_text

MERGED_SETTINGS = ("checkpoint_md5", "hop_s", "precision", "engine", "windows", "listing_sha1", "listed", "thresholds")
"""What every shard of one prediction must share."""
EMBEDDING_SETTINGS = ("checkpoint_md5", "hop_s", "engine", "windows", "listing_sha1", "listed", "dim")
"""What every shard of one embedding job must share."""
JOBS = {"predict.json": "prediction", "embed.json": "embedding"}
"""The settings file of each job that shards, and what its folder holds."""


def merge_shards(folders: list[str | Path], out_dir: str | Path, parquet: bool = False) -> pd.DataFrame:
    """Join the output folders of the shards of one job, a prediction's or an embedding's, into ``out_dir``.

    The job is told by the first folder's settings file (``predict.json`` or ``embed.json``).
    Returns the joined table of windows: :func:`merge_predictions`'s scores, or
    :func:`merge_embeddings`'s windows.
    """
    if not folders:
        raise Mix2Error("merge needs the output folders of the shards of one prediction or embedding")
    if (Path(folders[0]) / "embed.json").is_file():
        return merge_embeddings(folders, out_dir, parquet)[0]
    return merge_predictions(folders, out_dir, parquet)


def merge_predictions(folders: list[str | Path], out_dir: str | Path, parquet: bool = False) -> pd.DataFrame:
    """Join the output folders of the ``n`` shards of one prediction into ``out_dir``; returns the score table.

    Every folder must hold a finished shard, of one checkpoint, settings and listing, and the
    shards must be 1 to ``n``, each once; together they must cover every recording listed
    exactly once (scored or failed). ``out_dir`` gets ``scores.csv`` (rows by recording, then
    window start), ``detections.csv``, ``failures.csv``, ``raven/`` and ``predict.json``, as
    one unsharded prediction writes them.
    """
    first = _finished_shards(folders, "predict.json", MERGED_SETTINGS)
    scores = pd.concat([pd.read_csv(Path(f) / "scores.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    found = pd.concat([pd.read_csv(Path(f) / "detections.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    failed = _failures(folders)
    files = _recordings_in_order(scores["file"].unique(), failed, first, len(folders))
    order = {file: i for i, file in enumerate(files)}
    scores = scores.sort_values("file", key=lambda column: column.map(order), kind="stable").reset_index(drop=True)
    found = found.sort_values(["file", "start_s", "species"], kind="stable").reset_index(drop=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "scores.csv", scores.to_csv(index=False, float_format="%.6f"))
    write_text(out / "detections.csv", found.to_csv(index=False, float_format="%.6f"))
    write_text(out / "failures.csv", failed.to_csv(index=False))
    if parquet:
        write_parquet(out / "scores.parquet", scores)
    write_raven_tables(out / "raven", found, [Path(f) for f in files], first["max_frequency_hz"])
    merged = {key: first[key] for key in ("checkpoint", *MERGED_SETTINGS, "max_frequency_hz")}
    write_text(out / "predict.json", json.dumps({**merged, "merged": [str(f) for f in folders], "finished": True}, indent=2))
    return scores


def merge_embeddings(folders: list[str | Path], out_dir: str | Path, parquet: bool = False) -> tuple[pd.DataFrame, np.ndarray]:
    """Join the output folders of the ``n`` shards of one embedding job (``mix2 embed --shard``) into ``out_dir``.

    The shards are checked as :func:`merge_predictions` checks a prediction's. ``out_dir`` gets
    ``windows.csv`` and ``embeddings.npy`` (rows by recording, then window start; with
    ``parquet``, ``embeddings.parquet``), ``failures.csv`` and ``embed.json``, as one unsharded
    job writes them. The embeddings are copied a recording at a time through memory maps, so
    memory stays bounded. Returns the windows and a read-only memory map of ``embeddings.npy``.
    """
    first = _finished_shards(folders, "embed.json", EMBEDDING_SETTINGS)
    tables = [pd.read_csv(Path(f) / "windows.csv", dtype={"file": str}) for f in folders]
    sources = [np.load(Path(f) / "embeddings.npy", mmap_mode="r") for f in folders]
    where = {}  # recording -> (its shard, its first row there, its windows)
    for shard, table in enumerate(tables):
        for file, rows in table.groupby("file", sort=False).indices.items():
            where[file] = (shard, rows[0], len(rows))
    failed = _failures(folders)
    files = _recordings_in_order(list(where), failed, first, len(folders))
    frames = [tables[shard].iloc[row : row + count] for shard, row, count in map(where.get, files)]

    def vectors_of(index: int) -> np.ndarray:
        shard, row, count = where[files[index]]
        return sources[shard][row : row + count]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table, vectors = write_embeddings(out, frames, vectors_of, first["dim"], parquet)
    write_text(out / "failures.csv", failed.to_csv(index=False))
    merged = {key: first[key] for key in ("checkpoint", *EMBEDDING_SETTINGS)}
    write_text(out / "embed.json", json.dumps({**merged, "merged": [str(f) for f in folders], "finished": True}, indent=2))
    return table, vectors


def _finished_shards(folders: list[str | Path], settings_file: str, shared: tuple[str, ...]) -> dict:
    """Check that ``folders`` hold shards 1 to ``n`` of one job, each once and finished, sharing the ``shared``
    settings; returns the first one's settings, or raises a one-line error."""
    what = JOBS[settings_file]
    if not folders:
        raise Mix2Error(f"merge needs the output folders of the shards of one {what}")
    records = [_finished_shard(Path(folder), settings_file) for folder in folders]
    first = records[0]
    for folder, record in zip(folders, records):
        differing = [key for key in shared if record.get(key) != first.get(key)]
        if differing:
            raise input_error(folder, f"is not a shard of the same {what} as {folders[0]} ({', '.join(differing)} differ)")
    shards = [tuple(map(int, record["shard"].split("/"))) for record in records]
    count = shards[0][1]
    indices = [index for index, total in shards if total == count]
    if len(indices) != len(shards) or sorted(indices) != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise Mix2Error(
            f"merge needs shards 1 to {count} of one {what}, each once"
            + (f"; missing {', '.join(map(str, missing))}" if missing else "")
            + (f"; given twice {', '.join(map(str, repeated))}" if repeated else "")
        )
    return first


def _failures(folders: list[str | Path]) -> pd.DataFrame:
    return pd.concat([pd.read_csv(Path(f) / "failures.csv", dtype=str, keep_default_na=False) for f in folders])


def _recordings_in_order(files: list[str], failed: pd.DataFrame, first: dict, shards: int) -> list[str]:
    """The recordings the shards hold, sorted by path, once checked to cover the listing once each with the failures."""
    files = sorted(files, key=Path)
    covered = len(files) + len(failed)
    if covered != first["listed"] or failed["file"].isin(files).any():
        raise Mix2Error(f"the {shards} shards cover {covered} recordings, not the {first['listed']} listed once each")
    return files


def _finished_shard(folder: Path, settings_file: str) -> dict:
    """The settings of a finished shard's output folder, or a one-line error."""
    record_path = folder / settings_file
    verb = settings_file.removesuffix(".json")
    if not record_path.is_file():
        raise input_error(folder, f"not an output folder of mix2 {verb} (it has no {settings_file})")
    record = json.loads(record_path.read_text())
    if record.get("shard") is None:
        raise input_error(
            folder,
            f"holds {'a' if verb == 'predict' else 'an'} {JOBS[settings_file]} that was not sharded "
            f"(mix2 {verb} --shard I/N); there is nothing to merge",
        )
    if not record.get("finished"):
        raise input_error(folder, f"shard {record['shard']} has not finished; run its job again, and it goes on where it stopped")
    return record
