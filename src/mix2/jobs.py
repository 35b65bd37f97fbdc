"""The jobs a user runs: :func:`train` and :func:`evaluate`. The command line wraps these.

A run folder holds:

- ``config.yaml``: the effective configuration;
- ``clips.csv`` and ``dataset.json``: the clips with their splits and labels, so evaluation
  reads exactly the clips the run was trained on;
- ``checkpoints/best.ckpt`` (best validation macro F1) and ``checkpoints/last.ckpt``;
- ``logs/metrics.csv``: losses and validation macro F1 per epoch;
- ``metrics.json``, ``test_predictions.csv`` and ``plots/*.png``: the test results, at the
  global threshold and at per-class thresholds tuned on validation (stored in the checkpoint);
  ``metrics.json`` is written last, so a folder that has it holds a finished run;
- ``failures.csv``: recordings that could not be read and were skipped.

Example:
    >>> from mix2 import default_config, train, evaluate
    >>> run_dir = train(default_config("chorus"))  # doctest: +SKIP
    >>> evaluate(run_dir)["macro_f1"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from mix2.config import RunConfig
from mix2.data.clips import CLIP_COLUMNS, ClipTable
from mix2.data.sources import read_source
from mix2.data.splits import assign_splits
from mix2.errors import input_error
from mix2.features.cache import FeatureCache, extract_features
from mix2.files import atomic_path
from mix2.metrics import class_groups, evaluate_scores, tune_thresholds
from mix2.reporting.plots import write_run_plots
from mix2.training import CachedClips, Classifier, load_classifier, store_thresholds

CHECKPOINT_MONITOR = "val_macro_f1"


def cache_root() -> Path:
    """Where features and the synthetic chorus are cached: ``$MIX2_CACHE_DIR`` or ``~/.cache/mix2``."""
    return Path(os.environ.get("MIX2_CACHE_DIR", Path.home() / ".cache" / "mix2"))


def train(config: RunConfig, run_dir: str | Path | None = None, progress: bool = True) -> Path:
    """Train on ``config.data.source``, keep the best checkpoint on validation, evaluate on test.

    Returns the run folder (``config.out_dir/<data>-<time>`` unless ``run_dir`` is given).
    """
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    table = read_source(config.data, cache_root())
    table = assign_splits(table, config.data.test_fraction, config.data.val_fraction, config.data.split_seed)
    run_dir = Path(run_dir) if run_dir is not None else _new_run_dir(Path(config.out_dir), table.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    config.to_yaml(run_dir / "config.yaml")

    cache = FeatureCache(cache_root() / "features", config.features)
    feature_paths, failures = extract_features(table, cache, config.data.window_s, progress)
    _write_failures(run_dir, table.failures + failures)
    usable = np.array([p is not None for p in feature_paths])
    table = table.select(usable)
    feature_paths = [p for p in feature_paths if p is not None]
    _write_clips(run_dir, table)

    loaders = {}
    for split in ("train", "val", "test"):  # all three must exist before hours of training
        rows = np.flatnonzero(table.clips["split"].to_numpy() == split)
        if rows.size == 0:
            raise input_error(config.data.source, f"no readable clips in the {split} split; the data needs more recordings")
        if split != "test":
            loaders[split] = _loader([feature_paths[i] for i in rows], table.labels[rows], config, shuffle=split == "train")

    module = Classifier(config.to_dict(), table.classes)
    checkpoint_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=checkpoint_dir, filename="best", monitor=CHECKPOINT_MONITOR, mode="max")
    # Lightning's save_last writes "last" only when "best" improves: an unmonitored callback
    # overwrites last.ckpt after every epoch instead.
    last = ModelCheckpoint(dirpath=checkpoint_dir, filename="last", enable_version_counter=False)
    trainer = L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=1,
        callbacks=[best, last],
        logger=CSVLogger(save_dir=run_dir, name="", version="logs"),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )
    with warnings.catch_warnings():
        # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless here.
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
        trainer.fit(module, loaders["train"], loaders["val"])
    evaluate(run_dir, progress=progress)
    return run_dir


def evaluate(run_dir: str | Path, checkpoint: str = "best", progress: bool = True) -> dict:
    """Score the test split with the run's ``best`` (or ``last``) checkpoint; write the results.

    The checkpoint's per-class thresholds are tuned on the validation split the first time
    (each class's F1-maximising score; see :func:`~mix2.metrics.tune_thresholds`) and stored in
    it. Test metrics are reported at the run's global threshold (0.5, the paper's) and, under
    ``"tuned"``, at the tuned thresholds. Writes ``metrics.json``, ``test_predictions.csv`` and
    ``plots/`` into ``run_dir`` and returns the metrics.
    """
    run_dir = Path(run_dir)
    checkpoint_path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    if not checkpoint_path.is_file():
        raise input_error(checkpoint_path, "no such checkpoint; is this a finished mix2 run folder?")
    config = RunConfig.from_yaml(run_dir / "config.yaml")
    table = read_run_clips(run_dir)
    module = load_classifier(checkpoint_path)
    if module.classes != table.classes:
        raise input_error(checkpoint_path, "the checkpoint's classes differ from the run's clips.csv")

    if module.thresholds is None:
        val, val_scores = _score_split(module, table, "val", config, run_dir, progress)
        tuned = tune_thresholds(val.labels, val_scores, config.train.threshold)
        store_thresholds(checkpoint_path, dict(zip(table.classes, tuned)))
        module.thresholds = tuned
    test, scores = _score_split(module, table, "test", config, run_dir, progress)

    train = table.split("train")
    groups = class_groups(
        table.classes, train.class_counts(), table.class_groups, config.data.frequent_fraction, config.data.common_fraction
    )
    metrics = evaluate_scores(test.labels, scores, table.classes, groups, config.train.threshold, train.class_counts())
    metrics["tuned"] = evaluate_scores(test.labels, scores, table.classes, groups, module.thresholds, train.class_counts())
    metrics["checkpoint"] = checkpoint
    predictions = pd.concat([test.clips[["file", "start_s", "end_s"]], pd.DataFrame(scores, columns=table.classes)], axis=1)
    predictions.to_csv(run_dir / "test_predictions.csv", index=False, float_format="%.6f")
    write_run_plots(metrics, run_dir / "logs" / "metrics.csv", run_dir / "plots")
    # Written last and atomically: a run folder with metrics.json is a finished run.
    with atomic_path(run_dir / "metrics.json") as partial:
        partial.write_text(json.dumps(metrics, indent=2))
    return metrics


def _score_split(
    module: Classifier, table: ClipTable, split: str, config: RunConfig, run_dir: Path, progress: bool
) -> tuple[ClipTable, np.ndarray]:
    """One split of a run's clips and its ``(clips, classes)`` probabilities."""
    clips = table.split(split)
    if len(clips) == 0:
        raise input_error(run_dir / "clips.csv", f"no clips in the {split} split")
    cache = FeatureCache(cache_root() / "features", config.features)
    feature_paths, failures = extract_features(clips, cache, config.data.window_s, progress)
    if failures:
        raise input_error(clips.root / failures[0][0], f"{split} audio became unreadable since training: {failures[0][1]}")
    module.eval()
    with torch.inference_mode():
        batches = _loader(feature_paths, clips.labels, config, shuffle=False)
        return clips, torch.cat([torch.sigmoid(module(x)) for x, _ in batches]).numpy()


def _loader(paths: list[Path], labels: np.ndarray, config: RunConfig, shuffle: bool) -> DataLoader:
    batch_size = config.train.batch_size
    generator = torch.Generator().manual_seed(config.train.seed)
    return DataLoader(
        CachedClips(paths, labels),
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=shuffle and len(paths) > batch_size,
        num_workers=config.train.num_workers,
        generator=generator,
        persistent_workers=config.train.num_workers > 0,
    )


def _new_run_dir(out_dir: Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    candidate, suffix = out_dir / f"{name}-{stamp}", 1
    while candidate.exists():
        suffix += 1
        candidate = out_dir / f"{name}-{stamp}-{suffix}"
    return candidate


def _write_clips(run_dir: Path, table: ClipTable) -> None:
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


def _write_failures(run_dir: Path, failures: list[tuple[str, str]]) -> None:
    pd.DataFrame(failures, columns=["file", "reason"]).to_csv(run_dir / "failures.csv", index=False)
    if failures:
        print(f"mix2: skipped {len(failures)} unreadable recording(s), listed in {run_dir / 'failures.csv'}")


__all__ = ["cache_root", "evaluate", "read_run_clips", "train"]
