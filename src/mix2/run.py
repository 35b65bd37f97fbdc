"""The jobs of one run: :func:`train`, :func:`resume`, :func:`evaluate` and :func:`baseline`. The command line wraps these.

Each writes a run folder (see :mod:`mix2.run_folder` for what it holds).

Example:
    >>> from mix2 import default_config, train, evaluate
    >>> run_dir = train(default_config("chorus"))  # doctest: +SKIP
    >>> evaluate(run_dir)["macro_f1"]  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader

from mix2.baseline import band_statistics, fit_baseline
from mix2.config import MONITORS, PRECISIONS, RunConfig, pick_device
from mix2.data.clips import SPLITS, ClipTable
from mix2.data.sources import read_source
from mix2.data.splits import assign_splits
from mix2.distributed import RUN_DIR_VARIABLE, is_first_process, launcher_ranks
from mix2.engines import Engine, load_engine
from mix2.errors import Mix2Error, TrainingInterrupted, input_error
from mix2.features.cache import FeatureCache, extract_features
from mix2.files import atomic_path, cache_root
from mix2.heap import keep_freed_heap_memory
from mix2.inference import TrainedModel, load_checkpoint, store_thresholds, trained_model
from mix2.losses import positive_weights
from mix2.metrics import class_groups, evaluate_scores, tune_thresholds
from mix2.reporting.plots import write_run_plots
from mix2.run_folder import config_to_resume, new_run_dir, read_run_clips, write_clips, write_failures
from mix2.training import (
    AtomicCheckpointIO,
    BestCheckpoint,
    Classifier,
    EpochLog,
    NonFiniteLoss,
    ProgressBar,
    RunData,
    StepTimes,
    WeightEma,
    check_components,
    clip_loader,
)
from mix2.transfer import InitSource, check_init

LOG = logging.getLogger("mix2")
"""Where a run says what it does (the folder it writes into); silent unless the caller configures it, as the CLI does."""


def check_config(config: RunConfig, here: bool = True, starting: bool = True) -> None:
    """Refuse, in one line, a configuration that cannot run: its settings (:meth:`RunConfig.check`;
    ``here`` as there), the model, mixer and loss it names (:func:`~mix2.training.check_components`)
    and, for a run ``starting`` (not resumed), the checkpoint it starts from (:func:`~mix2.transfer.check_init`)."""
    config.check(here)
    check_components(config)
    if starting:
        check_init(config)


def train(config: RunConfig, run_dir: str | Path | None = None, progress: bool = True, prepare_only: bool = False) -> Path:
    """Train on ``config.data.source``, keep the best checkpoint on validation, evaluate on test.

    Returns the run folder (``config.out_dir/<data>-<time>`` unless ``run_dir`` is given). A
    folder that already holds a run (one that got as far as choosing its clips) is refused:
    continue it with :func:`resume`.

    With ``prepare_only``, stop once the run folder holds its configuration and clips and the
    feature cache is filled: :func:`resume` trains it, in one process or in many (see
    :mod:`mix2.distributed`). In a process that a launcher started besides the first, train the
    run the first process prepared.
    """
    if not is_first_process():
        return _join(run_dir, config)
    check_config(config, here=not prepare_only)
    run_dir = Path(run_dir) if run_dir is not None else None
    if run_dir is not None and (run_dir / "clips.csv").is_file():
        raise input_error(run_dir, f"already holds a run; continue it with: mix2 train --resume {run_dir}")
    table = read_source(config.data, cache_root())
    run_dir = run_dir if run_dir is not None else new_run_dir(Path(config.out_dir), table.name)
    with removed_unless_started(run_dir):
        LOG.info("this run goes into %s", run_dir)
        config.to_yaml(run_dir / "config.yaml")
        cache = FeatureCache(cache_root() / "features", config.features)
        feature_paths, failures = extract_features(
            table, cache, config.data.window_s, progress, pick_device(config.train.accelerator)
        )
        write_failures(run_dir, table.failures + failures)
        usable = np.array([p is not None for p in feature_paths], dtype=bool)
        # Splits are drawn over the readable recordings only, so an unreadable file never empties one.
        try:
            table = assign_splits(
                table.select(usable),
                config.data.test_fraction,
                config.data.val_fraction,
                config.data.split_seed,
                config.data.val_split,
                config.data.val_folds,
                config.data.val_fold,
            )
        except ValueError as err:  # too few recordings for --val-folds: known only once the data is read
            raise input_error(config.data.source, str(err)) from None
        feature_paths = [p for p in feature_paths if p is not None]
        for split in SPLITS:  # all three must exist before hours of training
            if not (table.clips["split"] == split).any():
                raise input_error(config.data.source, f"no readable clips in the {split} split; the data needs more recordings")
        write_clips(run_dir, table)  # the run is resumable from here on
        if prepare_only:
            return run_dir
        trained = _fit(config, table, feature_paths, run_dir, progress)
    if trained:
        evaluate(run_dir, progress=progress)
    return run_dir


@contextlib.contextmanager
def removed_unless_started(run_dir: Path) -> Iterator[None]:
    """Create ``run_dir``, and remove it again if what runs inside fails before a first epoch is saved.

    A run that fails to start leaves no half-made folder behind; one interrupted by the user
    stays, to be resumed. A folder that existed before is never removed.
    """
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except TrainingInterrupted:
        raise
    except BaseException as err:
        if not created or (run_dir / "checkpoints" / "last.ckpt").is_file():
            raise
        shutil.rmtree(run_dir, ignore_errors=True)
        if isinstance(err, Mix2Error):
            err.args = (f"{err} (the run had not started: {run_dir} was removed)",)
        raise


def _join(run_dir: str | Path | None, config: RunConfig) -> Path:
    """Train, as one of the other processes, the run folder that the first process prepared."""
    return resume(prepared_run_dir(run_dir, "clips.csv", "train", config.out_dir), progress=False)


def prepared_run_dir(run_dir: str | Path | None, needed: str, verb: str, out_dir: str) -> Path:
    """The run folder that the first process prepared, for one of the others: ``run_dir``, else the one the
    first process named in :data:`~mix2.distributed.RUN_DIR_VARIABLE`; a one-line error where it lacks the
    file ``needed`` (``out_dir`` names where it was looked for when no folder is named)."""
    run_dir = run_dir if run_dir is not None else os.environ.get(RUN_DIR_VARIABLE)
    if run_dir is None or not (Path(run_dir) / needed).is_file():
        ranks = ", ".join(f"{name}={rank}" for name, rank in launcher_ranks().items())
        raise Mix2Error(
            f"{run_dir or out_dir}: this process ({ranks}) found no prepared run folder. Processes started together "
            f"by torchrun or SLURM need one: prepare it with one process (mix2 {verb} ... --run-dir DIR --prepare-only), "
            f"then start them all with: mix2 {verb} --resume DIR"
        )
    return Path(run_dir)


def resume(run_dir: str | Path, progress: bool = True) -> Path:
    """Continue an interrupted run from its last checkpoint, then evaluate it; returns ``run_dir``.

    The run goes on with its own ``config.yaml`` and ``clips.csv`` from the epoch after
    ``checkpoints/last.ckpt`` (from the start where no epoch finished), and ends with the same
    checkpoints, log and metrics as an uninterrupted run. A finished run (one with
    ``metrics.json``) is left as it is.
    """
    run_dir = Path(run_dir)
    config = config_to_resume(run_dir, "metrics.json", "clips.csv")
    if config is None:
        return run_dir
    check_config(config, starting=False)
    table = read_run_clips(run_dir)
    last = run_dir / "checkpoints" / "last.ckpt"
    if not last.is_file() and is_first_process():
        print(f"mix2: {run_dir} has no finished epoch yet; training it from the start")
    features = cached_features(table, config, run_dir, progress)
    if _fit(config, table, features, run_dir, progress, last if last.is_file() else None):
        evaluate(run_dir, progress=progress)
    return run_dir


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's banners (accelerators found, tips) kept back while it runs; its warnings still show."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


@quiet_lightning()
def _fit(
    config: RunConfig,
    table: ClipTable,
    feature_paths: list[Path],
    run_dir: Path,
    progress: bool,
    checkpoint: Path | None = None,
) -> bool:
    """Train on the run's clips, from scratch or from ``checkpoint``; checkpoints and logs go into ``run_dir``.

    Returns whether this is the first process, the one that goes on to evaluate.
    """
    # Read here with weights_only, so that a tampered or broken checkpoint is refused in one line.
    resumed_epoch = load_checkpoint(checkpoint)["epoch"] if checkpoint is not None else None
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    splits = table.clips["split"].to_numpy()

    def clips_of(split: str) -> tuple[list[Path], np.ndarray]:
        rows = np.flatnonzero(splits == split)
        return [feature_paths[i] for i in rows], table.labels[rows]

    data = RunData(clips_of("train"), clips_of("val"), config.train, config.features.top_db)
    if config.train.processes > 1 and len(data.train[0]) < config.train.batch_size:
        raise input_error(
            run_dir / "clips.csv",
            f"{len(data.train[0])} training clips do not fill one batch of {config.train.batch_size} to share over processes",
        )
    pos_weight = None
    if config.loss.pos_weight != "none":
        train_clips = table.split("train")
        pos_weight = positive_weights(train_clips.class_counts(), len(train_clips), config.loss.pos_weight).tolist()
    module = _classifier(config, table.classes, pos_weight, run_dir, starting=resumed_epoch is None)
    monitor = kept_by(config, data.val[1])
    trainer = lightning_trainer(config, run_dir, monitor, MONITORS[monitor], progress, resumed_epoch)
    fit_explained(trainer, module, data, checkpoint, run_dir)
    return trainer.is_global_zero


def _classifier(
    config: RunConfig, classes: list[str], pos_weight: list[float] | None, run_dir: Path, starting: bool
) -> Classifier:
    """The training module; where ``train.init`` names a checkpoint, its network starts from that one's.

    The start is recorded in ``init.json`` in the run folder and in every checkpoint, so that a
    resumed run (whose weights come from its own checkpoint) still says where it began.
    """
    record_path = run_dir / "init.json"
    if config.train.init is None:
        return Classifier(config.to_dict(), classes, pos_weight)
    source = InitSource.load(config.train.init) if starting or not record_path.is_file() else None
    if source is not None:
        record = source.record(classes)
        if is_first_process():
            record_path.write_text(json.dumps(record, indent=2))
    else:
        record = json.loads(record_path.read_text())
    module = Classifier(config.to_dict(), classes, pos_weight, initialised_from=record)
    if starting:
        source.copy_into(module.model, classes)
    return module


def lightning_trainer(
    config: RunConfig, run_dir: Path, monitor: str, mode: str, progress: bool, resumed_epoch: int | None
) -> L.Trainer:
    """The Lightning trainer of a run in ``run_dir``: ``checkpoints/best.ckpt`` (on ``monitor``, ``mode``
    ``"min"`` or ``"max"``) and ``last.ckpt`` after every epoch, written atomically; ``logs/metrics.csv``
    (the rows of a resumed run's first ``resumed_epoch + 1`` epochs kept) and ``logs/speed.csv``. From here on
    the process keeps freed memory for the next step (:func:`mix2.heap.keep_freed_heap_memory`)."""
    keep_freed_heap_memory()
    checkpoint_dir = run_dir / "checkpoints"
    # Lightning's save_last writes "last" only when "best" improves: an unmonitored callback
    # overwrites last.ckpt after every epoch instead.
    last = ModelCheckpoint(dirpath=checkpoint_dir, filename="last", enable_version_counter=False)
    logger = EpochLog(run_dir / "logs" / "metrics.csv", keep_epochs=0 if resumed_epoch is None else resumed_epoch + 1)
    return L.Trainer(
        max_epochs=config.train.epochs,
        accelerator=config.train.accelerator,
        devices=config.train.devices,
        num_nodes=config.train.num_nodes,
        strategy=config.train.strategy,
        sync_batchnorm=config.train.sync_batchnorm,
        use_distributed_sampler=False,  # the data modules share the batches out themselves
        precision=PRECISIONS[config.train.precision],
        deterministic="warn" if config.train.deterministic else False,
        callbacks=[
            last,  # before best.ckpt's callback, which copies it where the run keeps its last epoch
            BestCheckpoint(checkpoint_dir, monitor, mode),
            StepTimes(run_dir / "logs" / "speed.csv"),
            *([WeightEma(config.train.ema_half_life_epochs)] if config.train.ema_half_life_epochs else []),
            *([ProgressBar()] if progress else []),
        ],
        plugins=[AtomicCheckpointIO()],
        logger=logger,
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        log_every_n_steps=1,
    )


def fit_explained(
    trainer: L.Trainer,
    module: L.LightningModule,
    data: L.LightningDataModule,
    checkpoint: Path | None,
    run_dir: Path,
    verb: str = "train",
) -> None:
    """``trainer.fit`` from ``checkpoint`` (or the start), with a non-finite loss and an interruption each
    turned into one line that names what was kept and how to go on (``mix2 <verb> --resume``)."""
    # Deterministic mode also fills every new tensor's memory, which costs a fifth of a CPU
    # training step; no result reads uninitialised memory, so the runs stay bit-identical without it.
    torch.utils.deterministic.fill_uninitialized_memory = False
    checkpoint_dir = run_dir / "checkpoints"
    try:
        with warnings.catch_warnings():
            # Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless here.
            warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
            warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty")
            with _run_dir_for_other_processes(run_dir):
                trainer.fit(module, datamodule=data, ckpt_path=checkpoint, weights_only=True)
    except NonFiniteLoss as err:
        raise NonFiniteLoss(f"{run_dir}: {err}; training stopped. {_kept(checkpoint_dir)} Try a lower --lr.") from None
    except SystemExit:  # Lightning ends Ctrl-C with sys.exit after its clean-up; its SIGTERMException is one too
        raise TrainingInterrupted(
            f"{run_dir}: training interrupted. {_kept(checkpoint_dir)} Continue with: mix2 {verb} --resume {run_dir}"
        ) from None


@contextlib.contextmanager
def _run_dir_for_other_processes(run_dir: Path) -> Iterator[None]:
    """Name the run folder in :data:`~mix2.distributed.RUN_DIR_VARIABLE` while Lightning may start processes."""
    before = os.environ.get(RUN_DIR_VARIABLE)
    os.environ[RUN_DIR_VARIABLE] = str(run_dir)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(RUN_DIR_VARIABLE)
        else:
            os.environ[RUN_DIR_VARIABLE] = before


def kept_by(config: RunConfig, val_labels: np.ndarray) -> str:
    """The validation metric that chooses ``best.ckpt``: ``train.monitor``, or ``val_loss`` where mAP has no positive to rank."""
    if config.train.monitor == "val_map" and not np.asarray(val_labels).any():
        return "val_loss"
    return config.train.monitor


def _kept(checkpoint_dir: Path) -> str:
    last = checkpoint_dir / "last.ckpt"
    if not last.is_file():
        return "No epoch had finished, so there is no checkpoint."
    epoch = load_checkpoint(last)["epoch"] + 1
    return f"The last good checkpoint, {last} (after epoch {epoch}), is kept."


def evaluate(run_dir: str | Path, checkpoint: str = "best", progress: bool = True) -> dict:
    """Score the test split with the run's ``best`` (or ``last``) checkpoint; write the results.

    The checkpoint's per-class thresholds are tuned on the validation split the first time
    (each class's F1-maximising score; see :func:`~mix2.metrics.tune_thresholds`) and stored in
    it. Test metrics are reported at the run's global threshold (0.5, the paper's) and, under
    ``"tuned"``, at the tuned thresholds. Writes ``metrics.json``, ``test_predictions.csv`` and
    ``plots/`` into ``run_dir`` and returns the metrics.
    """
    run = _TrainedRun.open(run_dir, checkpoint)
    if run.trained.thresholds is None:
        val, val_scores = _score_split(run.engine, run.table, "val", run.config, run.run_dir, progress)
        tuned = tune_thresholds(val.labels, val_scores, run.config.train.threshold)
        store_thresholds(run.checkpoint_path, run.state, dict(zip(run.table.classes, tuned)))
        run.trained.thresholds = tuned
    test, scores = _score_split(run.engine, run.table, "test", run.config, run.run_dir, progress)

    metrics = scored_metrics(run.table, run.config, test.labels, scores, run.trained.thresholds)
    metrics["checkpoint"] = checkpoint
    metrics["engine"] = run.engine.name
    metrics["kept"] = kept_epoch(run.state, run.checkpoint_path, run.config.train.epochs)
    predictions = pd.concat([test.clips[["file", "start_s", "end_s"]], pd.DataFrame(scores, columns=run.table.classes)], axis=1)
    # 9 significant digits give each float32 score back exactly (six decimals tied saturated scores, moving metrics).
    predictions.to_csv(run.run_dir / "test_predictions.csv", index=False, float_format="%.9g")
    write_run_plots(metrics, run.run_dir / "logs" / "metrics.csv", run.run_dir / "plots")
    # Written last and atomically: a run folder with metrics.json is a finished run.
    with atomic_path(run.run_dir / "metrics.json") as partial:
        partial.write_text(json.dumps(metrics, indent=2))
    return metrics


def score_split(
    run_dir: str | Path, split: str, checkpoint: str = "best", progress: bool = False
) -> tuple[ClipTable, np.ndarray]:
    """A finished run's clips of ``split`` and the ``(clips, classes)`` probabilities its ``checkpoint`` gives them.

    Example (the validation clips, which ``metrics.json`` does not keep):
        >>> val, scores = score_split("runs/chorus-20240101-120000", "val")  # doctest: +SKIP
    """
    run = _TrainedRun.open(run_dir, checkpoint)
    return _score_split(run.engine, run.table, split, run.config, run.run_dir, progress)


@dataclass
class _TrainedRun:
    """A finished run folder with one of its checkpoints loaded, checked against its clips."""

    run_dir: Path
    config: RunConfig
    table: ClipTable
    checkpoint_path: Path
    state: dict
    trained: TrainedModel
    engine: Engine

    @classmethod
    def open(cls, run_dir: str | Path, checkpoint: str) -> _TrainedRun:
        run_dir = Path(run_dir)
        checkpoint_path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
        if not (run_dir / "config.yaml").is_file():
            raise input_error(run_dir, "not a mix2 run folder (it has no config.yaml)")
        config = RunConfig.from_yaml(run_dir / "config.yaml")
        check_trained(run_dir, config.train.epochs)
        if not checkpoint_path.is_file():
            raise input_error(checkpoint_path, "no such checkpoint; is this a finished mix2 run folder?")
        table = read_run_clips(run_dir)
        state = load_checkpoint(checkpoint_path)  # read once: the network, the thresholds stored in it, why it was kept
        trained = trained_model(state, checkpoint_path)
        if trained.classes != table.classes:
            raise input_error(checkpoint_path, "the checkpoint's classes differ from the run's clips.csv")
        engine = load_engine(trained, checkpoint_path, "auto", pick_device(config.train.accelerator))
        return cls(run_dir, config, table, checkpoint_path, state, trained, engine)


def check_trained(run_dir: Path, epochs: int) -> None:
    """Refuse to score a run whose training has not finished: its results would mark it finished, and it could not be resumed."""
    last = run_dir / "checkpoints" / "last.ckpt"
    done = load_checkpoint(last)["epoch"] + 1 if last.is_file() else 0
    if done < epochs:
        raise input_error(
            run_dir,
            f"training stopped after {done} of {epochs} epochs; finish it with: mix2 train --resume {run_dir} "
            "(it is evaluated when it finishes)",
        )


def scored_metrics(table: ClipTable, config: RunConfig, labels: np.ndarray, scores: np.ndarray, tuned: np.ndarray) -> dict:
    """The metrics of a run's test ``scores`` ``(clips, classes)`` at the run's threshold, and under ``"tuned"`` at the per-class ``tuned`` thresholds.

    Classes are grouped into frequent / common / rare by the run's training counts.
    """
    counts = table.split("train").class_counts()
    groups = class_groups(table.classes, counts, table.class_groups, config.data.frequent_fraction, config.data.common_fraction)
    metrics = evaluate_scores(labels, scores, table.classes, groups, config.train.threshold, counts)
    metrics["tuned"] = evaluate_scores(labels, scores, table.classes, groups, tuned, counts)
    return metrics


def kept_epoch(state: dict, checkpoint_path: Path, epochs: int) -> dict:
    """Which epoch a checkpoint (its loaded ``state``) holds and why it was kept: ``epoch`` (counted from 1),
    ``epochs``, and for ``best.ckpt`` the ``monitor`` that chose it with its ``value``."""
    kept = {"epoch": int(state["epoch"]) + 1, "epochs": epochs, "monitor": None, "value": None}
    for callback in state.get("callbacks", {}).values():
        if callback.get("monitor") and Path(str(callback.get("best_model_path", ""))).name == checkpoint_path.name:
            kept["monitor"], kept["value"] = callback["monitor"], float(callback["best_model_score"])
    return kept


def baseline(run_dir: str | Path, progress: bool = True) -> dict:
    """Fit the log-mel statistics + logistic regression baseline (:mod:`mix2.baseline`) on a run's clips.

    Fitted on the run's training clips, with per-class thresholds tuned on its validation
    clips as the network's are; scored on its
    test clips with the same metrics as :func:`evaluate`. Writes ``baseline.json`` into
    ``run_dir`` (atomically) and returns it. Needs only the run's clips, not a finished run.
    """
    run_dir = Path(run_dir)
    config = RunConfig.from_yaml(run_dir / "config.yaml")
    table = read_run_clips(run_dir)

    def statistics(split: str) -> tuple[np.ndarray, ClipTable]:
        clips = table.split(split)
        paths = cached_features(clips, config, run_dir, progress, "features for the baseline")  # one clip in memory at a time
        return np.concatenate([band_statistics(np.load(path)[None]) for path in paths]), clips

    (train_x, train), (val_x, val), (test_x, test) = (statistics(split) for split in ("train", "val", "test"))
    model = fit_baseline(train_x, train.labels, seed=config.train.seed)
    thresholds = tune_thresholds(val.labels, model.predict_proba(val_x), config.train.threshold)
    scores = model.predict_proba(test_x)
    metrics = scored_metrics(table, config, test.labels, scores, thresholds)
    metrics["model"] = "log-mel statistics + logistic regression"
    with atomic_path(run_dir / "baseline.json") as partial:
        partial.write_text(json.dumps(metrics, indent=2))
    return metrics


def _score_split(
    engine: Engine, table: ClipTable, split: str, config: RunConfig, run_dir: Path, progress: bool
) -> tuple[ClipTable, np.ndarray]:
    """One split of a run's clips and its ``(clips, classes)`` probabilities, the network run by ``engine``."""
    clips = table.split(split)
    if len(clips) == 0:
        raise input_error(run_dir / "clips.csv", f"no clips in the {split} split")
    batches = feature_batches(clips, split, config, run_dir, progress)
    return clips, torch.cat([torch.sigmoid(engine(x)) for x, _ in batches]).numpy()


def feature_batches(clips: ClipTable, split: str, config: RunConfig, run_dir: Path, progress: bool) -> DataLoader:
    """``(features, labels)`` batches of a run's ``clips`` (of its ``split``), in order, as evaluation scores them."""
    feature_paths = cached_features(clips, config, run_dir, progress, label=f"features of the {split} clips")
    return clip_loader(feature_paths, clips.labels, config.train, config.train.batch_size, top_db=config.features.top_db)


def cached_features(
    clips: ClipTable, config: RunConfig, run_dir: Path, progress: bool, label: str = "features of the run's clips"
) -> list[Path]:
    """The feature files of a run's clips, computed again where the cache lost them; unreadable audio is an error."""
    cache = FeatureCache(cache_root() / "features", config.features)
    feature_paths, failures = extract_features(
        clips, cache, config.data.window_s, progress, pick_device(config.train.accelerator), label
    )
    if failures:
        file, reason = failures[0]
        raise input_error(clips.root / file, f"audio of {run_dir} became unreadable since training started: {reason}")
    return feature_paths


__all__ = ["baseline", "evaluate", "resume", "train"]
