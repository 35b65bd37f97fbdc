"""``mix2 pretrain``: self-supervised pretraining of the network on recordings without labels.

``pretrain(config)`` draws pairs of views from the recordings of ``config.pretrain.folders``
(:mod:`mix2.data.crops`) and trains the network to tell each pair from the batch's others
(:mod:`mix2.contrastive`). A run folder (``runs/pretrain-<time>``, or ``run_dir``) holds:

- ``config.yaml``: the effective configuration;
- ``recordings.csv``: ``file, duration_s``, the recordings the crops are drawn from;
- ``failures.csv``: recordings that could not be read, with the reason;
- ``checkpoints/best.ckpt`` (the lowest validation loss) and ``last.ckpt`` (after every epoch;
  :func:`resume_pretraining` goes on from it): a network with no classes, for ``mix2 train
  --init`` and ``mix2 embed``;
- ``logs/metrics.csv`` (per epoch: ``train_loss``, ``val_loss``, ``val_top1``) and ``logs/speed.csv``;
- ``plots/pretraining_curves.png``, drawn once training ends;
- ``pretrained.json``, written last: the epochs, the kept epoch and its validation scores, and
  the time spent in training steps over all calls (``training_s``; validation aside).

It runs over several processes as training does (``train.devices``, ``train.num_nodes``; see
:mod:`mix2.distributed` and :mod:`mix2.contrastive`): the first process prepares the folder and
the others, started by Lightning, pretrain it; processes that torchrun or SLURM start together
need it prepared first (``prepare_only``), then each runs :func:`resume_pretraining`.

Example:
    >>> config = pretraining_config(["../shared/data/nips4b_unlabelled"])  # doctest: +SKIP
    >>> run_dir = pretrain(config)  # doctest: +SKIP
    >>> # then: mix2 train --data my_labelled_site --init <run_dir>/checkpoints/best.ckpt
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
import pandas as pd
from torch.utils.data import DataLoader

from mix2.config import RunConfig, default_config
from mix2.contrastive import Pretrainer
from mix2.data.crops import EpochItems, Recording, ViewPairs, list_recordings
from mix2.distributed import is_first_process
from mix2.errors import Mix2Error, input_error
from mix2.inference import load_checkpoint
from mix2.reporting.plots import plot_training_curves
from mix2.run import (
    check_config,
    fit_explained,
    lightning_trainer,
    prepared_run_dir,
    quiet_lightning,
    removed_unless_started,
)
from mix2.run_folder import config_to_resume, new_run_dir, write_failures
from mix2.training import loader

LOG = logging.getLogger("mix2")
PRETRAINING = {"epochs": 40, "batch_size": 64, "lr": 1e-3, "warmup_epochs": 2.0, "schedule": "warmup_cosine"}
"""The optimisation ``pretraining_config`` starts from (``train`` settings): about two hours of one CPU
thread at the default 2,048 crops an epoch. Measured on NIPS4B (README, "Which mixing in pretraining,
and how long"): without i-Mix (the mixer ``none``) fine-tuned better than with it, and 30 epochs of
1,024 crops better than 10; this longer budget itself is not measured."""
VALIDATION_STREAM = 1
"""The draw stream of the fixed validation crops, apart from training's (see :class:`~mix2.data.crops.ViewPairs`)."""


def pretraining_config(folders: list[str]) -> RunConfig:
    """The default configuration for pretraining on ``folders``: the run's front-end and augmentation, no mixing,
    and :data:`PRETRAINING`'s optimisation."""
    config = default_config(", ".join(folders))
    config.pretrain.folders = list(folders)
    for name, value in PRETRAINING.items():
        setattr(config.train, name, value)
    return config


class PretrainData(L.LightningDataModule):
    """Training pairs, drawn anew each epoch, and a fixed set of validation pairs, from the same recordings."""

    def __init__(self, recordings: list[Recording], config: RunConfig) -> None:
        super().__init__()
        pretrain = config.pretrain

        def pairs(crops: int, stream: int) -> ViewPairs:
            return ViewPairs(
                recordings,
                config.data.window_s,
                config.features.sample_rate_hz,
                crops,
                config.train.seed,
                pretrain.max_view_offset_s,
                pretrain.max_background_rms_ratio,
                stream,
            )

        self.train_pairs, self.val_pairs = pairs(pretrain.crops_per_epoch, 0), pairs(pretrain.val_crops, VALIDATION_STREAM)
        self.train = config.train

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_pairs, follow_epochs=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_pairs, follow_epochs=False)

    def _loader(self, pairs: ViewPairs, follow_epochs: bool) -> DataLoader:
        """This process's share of every global batch of ``pairs`` (see :mod:`mix2.distributed`)."""
        rank, processes = self.trainer.global_rank, self.trainer.world_size
        batch = self.train.batch_size
        items = EpochItems(len(pairs), follow_epochs=follow_epochs, batch_size=batch, rank=rank, processes=processes)
        # drop_last in training: the projection head's batch norm needs more than one example
        return loader(pairs, self.train, batch // processes, items, drop_last=follow_epochs)


def check_pretraining(config: RunConfig, here: bool = True) -> None:
    """Refuse, in one line, what pretraining cannot run: the settings (``here`` as :func:`~mix2.run.check_config`'s),
    no folder, too few crops, validation crops that do not split into the processes' shares."""
    check_config(config, here=here, starting=False)
    if not config.pretrain.folders:
        raise Mix2Error("pretraining needs recordings: pass --data FOLDER (one or more)")
    if config.pretrain.crops_per_epoch < config.train.batch_size:
        raise Mix2Error(
            f"--crops-per-epoch ({config.pretrain.crops_per_epoch}) must be at least --batch-size ({config.train.batch_size})"
        )
    if config.train.processes > 1 and config.pretrain.val_crops % config.train.batch_size:
        raise Mix2Error(
            f"--val-crops ({config.pretrain.val_crops}) must be a multiple of --batch-size ({config.train.batch_size}) "
            "on several processes, so that every validation batch is shared whole"
        )


def pretrain(config: RunConfig, run_dir: str | Path | None = None, progress: bool = True, prepare_only: bool = False) -> Path:
    """Pretrain on ``config.pretrain.folders`` (see the module docstring); returns the run folder.

    With ``prepare_only``, stop once the run folder holds its configuration and recordings:
    :func:`resume_pretraining` trains it, in one process or in many (torchrun, SLURM; see
    :mod:`mix2.distributed`). In a process that a launcher started besides the first, pretrain
    the run the first process prepared.
    """
    if not is_first_process():  # pretrain the folder the first process prepared
        return resume_pretraining(prepared_run_dir(run_dir, "recordings.csv", "pretrain", config.out_dir), progress=False)
    check_pretraining(config, here=not prepare_only)
    if run_dir is not None and (Path(run_dir) / "recordings.csv").is_file():
        raise input_error(run_dir, f"already holds a pretraining run; continue it with: mix2 pretrain --resume {run_dir}")
    recordings, failures = list_recordings(config.pretrain.folders)
    if len(recordings) < 2:
        raise input_error(
            config.pretrain.folders[0], f"pretraining needs at least 2 readable recordings, found {len(recordings)}"
        )
    run_dir = Path(run_dir) if run_dir is not None else new_run_dir(Path(config.out_dir), "pretrain")
    with removed_unless_started(run_dir):
        LOG.info("this pretraining run goes into %s", run_dir)
        config.to_yaml(run_dir / "config.yaml")
        write_failures(run_dir, failures)
        table = pd.DataFrame({"file": [str(r.path) for r in recordings], "duration_s": [r.duration_s for r in recordings]})
        table.to_csv(run_dir / "recordings.csv", index=False)
        LOG.info(
            "%d recordings, %.1f min of audio (%d unreadable, in failures.csv)",
            len(recordings),
            table["duration_s"].sum() / 60,
            len(failures),
        )
        if not prepare_only:
            _fit(config, recordings, run_dir, progress)
    return run_dir


def resume_pretraining(run_dir: str | Path, progress: bool = True) -> Path:
    """Go on with an interrupted pretraining run from its last checkpoint, with its own settings and recordings."""
    run_dir = Path(run_dir)
    config = config_to_resume(run_dir, "pretrained.json", "recordings.csv", "pretraining run")
    if config is None:
        return run_dir
    check_pretraining(config)
    table = pd.read_csv(run_dir / "recordings.csv", dtype={"file": str})
    recordings = [Recording(Path(f), float(d)) for f, d in zip(table["file"], table["duration_s"])]
    last = run_dir / "checkpoints" / "last.ckpt"
    _fit(config, recordings, run_dir, progress, last if last.is_file() else None)
    return run_dir


@quiet_lightning()
def _fit(config: RunConfig, recordings: list[Recording], run_dir: Path, progress: bool, checkpoint: Path | None = None) -> None:
    resumed_epoch = load_checkpoint(checkpoint)["epoch"] if checkpoint is not None else None
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    trainer = lightning_trainer(config, run_dir, "val_loss", "min", progress, resumed_epoch)
    fit_explained(trainer, Pretrainer(config.to_dict()), PretrainData(recordings, config), checkpoint, run_dir, "pretrain")
    if not trainer.is_global_zero:  # the first process writes the summary
        return
    log = run_dir / "logs" / "metrics.csv"
    plot_training_curves(log, run_dir / "plots" / "pretraining_curves.png")
    best = load_checkpoint(run_dir / "checkpoints" / "best.ckpt")
    by_epoch = pd.read_csv(log).set_index("epoch")
    kept = int(best["epoch"]) + 1
    speed = pd.read_csv(run_dir / "logs" / "speed.csv")
    summary = {
        "epochs": config.train.epochs,
        "kept_epoch": kept,
        "val_loss": float(by_epoch.loc[kept, "val_loss"]),
        "val_top1": float(by_epoch.loc[kept, "val_top1"]),
        "training_s": round(float(speed["seconds"].sum()), 1),  # every epoch's steps, over all calls; validation aside
        "recordings": len(recordings),
        "audio_min": round(sum(r.duration_s for r in recordings) / 60, 2),
    }
    (run_dir / "pretrained.json").write_text(json.dumps(summary, indent=2))
