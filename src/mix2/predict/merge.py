"""The output folders of the N shards of one prediction, joined into one."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from mix2.errors import Mix2Error, input_error
from mix2.predict.output import write_parquet, write_raven_tables, write_text

MERGED_SETTINGS = ("checkpoint_md5", "hop_s", "precision", "engine", "windows", "listing_sha1", "listed", "thresholds")
"""What every shard of one prediction must share."""


def merge_predictions(folders: list[str | Path], out_dir: str | Path, parquet: bool = False) -> pd.DataFrame:
    """Join the output folders of the ``n`` shards of one prediction into ``out_dir``; returns the score table.

    Every folder must hold a finished shard, of one checkpoint, settings and listing, and the
    shards must be 1 to ``n``, each once; together they must cover every recording listed
    exactly once (scored or failed). ``out_dir`` gets ``scores.csv`` (rows by recording, then
    window start), ``detections.csv``, ``failures.csv``, ``raven/`` and ``predict.json``, as
    one unsharded prediction writes them.
    """
    if not folders:
        raise Mix2Error("merge needs the output folders of the shards of one prediction")
    records = [_finished_shard(Path(folder)) for folder in folders]
    first = records[0]
    for folder, record in zip(folders, records):
        differing = [key for key in MERGED_SETTINGS if record.get(key) != first.get(key)]
        if differing:
            raise input_error(folder, f"is not a shard of the same prediction as {folders[0]} ({', '.join(differing)} differ)")
    shards = [tuple(map(int, record["shard"].split("/"))) for record in records]
    count = shards[0][1]
    indices = [index for index, total in shards if total == count]
    if len(indices) != len(shards) or sorted(indices) != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise Mix2Error(
            f"merge needs shards 1 to {count} of one prediction, each once"
            + (f"; missing {', '.join(map(str, missing))}" if missing else "")
            + (f"; given twice {', '.join(map(str, repeated))}" if repeated else "")
        )
    scores = pd.concat([pd.read_csv(Path(f) / "scores.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    found = pd.concat([pd.read_csv(Path(f) / "detections.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    failed = pd.concat([pd.read_csv(Path(f) / "failures.csv", dtype=str, keep_default_na=False) for f in folders])
    files = sorted(scores["file"].unique(), key=Path)
    covered = len(files) + len(failed)
    if covered != first["listed"] or failed["file"].isin(files).any():
        raise Mix2Error(f"the {count} shards cover {covered} recordings, not the {first['listed']} listed once each")
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


def _finished_shard(folder: Path) -> dict:
    """The ``predict.json`` of a finished shard's output folder, or a one-line error."""
    record_path = folder / "predict.json"
    if not record_path.is_file():
        raise input_error(folder, "not an output folder of mix2 predict (it has no predict.json)")
    record = json.loads(record_path.read_text())
    if record.get("shard") is None:
        raise input_error(folder, "holds a prediction that was not sharded (mix2 predict --shard I/N); there is nothing to merge")
    if not record.get("finished"):
        raise input_error(folder, f"shard {record['shard']} has not finished; run its job again, and it goes on where it stopped")
    return record
