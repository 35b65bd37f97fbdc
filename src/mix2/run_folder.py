"""The run folder: what a run writes, and how it is read back.

A run folder holds:

- ``config.yaml``: the effective configuration;
- ``clips.csv`` and ``dataset.json``: the clips with their splits and labels, so evaluation
  reads exactly the clips the run was trained on (:func:`write_clips`, :func:`read_run_clips`);
- ``checkpoints/best.ckpt`` (best validation mAP, or ``train.monitor``) and ``checkpoints/last.ckpt``;
- ``logs/metrics.csv``: one row per epoch, counted from 1: the training loss and its terms,
  the validation loss, mAP and macro F1 (``logs/speed.csv``: each epoch's training speed);
- ``metrics.json``, ``test_predictions.csv`` (:func:`read_test_scores`) and ``plots/*.png``: the test results, at the
  global threshold and at per-class thresholds tuned on validation (stored in the checkpoint);
  ``metrics.json`` is written last, once training has finished, so a folder that has it holds
  a finished run (:func:`is_finished`);
- ``failures.csv``: recordings that could not be read and were skipped (:func:`write_failures`);
- ``baseline.json``: the log-mel statistics + logistic regression baseline on the same clips.

Example:
    >>> is_finished(Path("runs/chorus-20261121-193000"))  # doctest: +SKIP
    True
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from mix2.config import RunConfig
from mix2.data.clips import CLIP_COLUMNS, ClipTable
from mix2.errors import input_error


def new_run_dir(out_dir: Path, name: str) -> Path:
    """A new folder name under ``out_dir``: ``<name>-<date>-<time>``, suffixed where that exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, suffix = out_dir / f"{name}-{stamp}", 1
    while candidate.exists():
        suffix += 1
        candidate = out_dir / f"{name}-{stamp}-{suffix}"
    return candidate


def write_clips(run_dir: Path, table: ClipTable) -> None:
    """``clips.csv`` (each clip with its split and labels) and ``dataset.json`` (classes, groups, data root)."""
    frame = pd.concat([table.clips[list(CLIP_COLUMNS)], pd.DataFrame(table.labels, columns=table.classes)], axis=1)
    frame.to_csv(run_dir / "clips.csv", index=False)
    dataset = {
        "root": str(table.root.resolve()),
        "name": table.name,
        "classes": table.classes,
        "class_groups": table.class_groups,
    }
    (run_dir / "dataset.json").write_text(json.dumps(dataset, indent=2))


def read_run_clips(run_dir: str | Path) -> ClipTable:
    """The clips of a run folder, with their splits and labels, as training saw them."""
    run_dir = Path(run_dir)
    dataset_path = run_dir / "dataset.json"
    if not dataset_path.is_file():
        raise input_error(dataset_path, "missing; is this a mix2 run folder?")
    dataset = json.loads(dataset_path.read_text())
    frame = pd.read_csv(run_dir / "clips.csv", dtype={"file": str, "group": str, "split": str}, keep_default_na=False)
    return ClipTable(
        clips=frame[list(CLIP_COLUMNS)],
        labels=frame[dataset["classes"]].to_numpy(),
        classes=dataset["classes"],
        root=dataset["root"],
        class_groups=dataset["class_groups"],
        name=dataset["name"],
    )


def read_test_scores(run_dir: str | Path) -> tuple[ClipTable, np.ndarray]:
    """A finished run's test clips and their ``(clips, classes)`` float32 probabilities from ``test_predictions.csv``:
    the scores its metrics were computed from, exactly, for a run evaluated since they are written with 9 significant digits."""
    run_dir = Path(run_dir)
    test = read_run_clips(run_dir).split("test")
    path = run_dir / "test_predictions.csv"
    if not path.is_file():
        raise input_error(path, "missing; is this a finished mix2 run folder?")
    predictions = pd.read_csv(path, dtype={"file": str, "start_s": float, "end_s": float}, keep_default_na=False)
    if list(predictions.columns[3:]) != test.classes or not predictions[["file", "start_s"]].equals(
        test.clips[["file", "start_s"]].reset_index(drop=True)
    ):
        raise input_error(path, "its clips or classes are not the run's test clips, in order")
    return test, predictions[test.classes].to_numpy(dtype=np.float32)


def write_failures(run_dir: Path, failures: list[tuple[str, str]]) -> None:
    """``failures.csv``: each unreadable recording with its reason (the run went on without them)."""
    pd.DataFrame(failures, columns=["file", "reason"]).to_csv(run_dir / "failures.csv", index=False)
    if failures:
        print(f"mix2: skipped {len(failures)} unreadable recording(s), listed in {run_dir / 'failures.csv'}")


def is_finished(run_dir: Path) -> bool:
    """A run folder is finished once its ``metrics.json`` exists (it is written last)."""
    return (run_dir / "metrics.json").is_file()


def config_to_resume(run_dir: Path, finished: str, needed: str, kind: str = "run") -> RunConfig | None:
    """The configuration of the ``kind`` in ``run_dir`` to go on with; ``None`` where it holds ``finished``
    (a finished run: said on stdout). A folder without ``config.yaml`` and ``needed`` is a one-line error."""
    if (run_dir / finished).is_file():
        print(f"mix2: {run_dir} is a finished {kind} (it has {finished}); nothing to resume")
        return None
    if not (run_dir / "config.yaml").is_file() or not (run_dir / needed).is_file():
        raise input_error(run_dir, f"not a resumable mix2 {kind} folder (it needs config.yaml and {needed})")
    return RunConfig.from_yaml(run_dir / "config.yaml")
