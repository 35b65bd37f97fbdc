"""The Lightning module that trains a classifier on cached log-mel features.

One training step: features ``(batch, 1, mels, frames)`` -> SpecAugment and circular time
shift, per clip -> the model, with this step's mix applied at its stage -> loss against the
mixed targets. Validation computes the loss, mAP and macro F1 at the run's threshold; the
checkpoint kept is the best on a validation metric (mAP by default, :class:`BestCheckpoint`),
never one chosen on the test set. The learning rate warms up linearly and then decays along a
cosine, stepped at every optimiser step (:func:`warmup_cosine`), or follows the paper's
per-epoch cosine.

The module's hyperparameters are the run configuration as plain data plus the class names, so
a checkpoint rebuilds its model by name, and loads with ``torch.load(weights_only=True)``.
Per-class thresholds tuned on validation are stored beside the weights under ``"thresholds"``.

Resuming reproduces a run exactly. Every random draw of a training epoch (the order of the
clips, SpecAugment, the time shift, the mixing and dropout) comes from generators seeded by
``(seed, epoch)`` at the start of that epoch (:func:`epoch_seed`, :func:`mixing_seed`), so the
random state at an epoch boundary is the seed and the epoch number, both held by the checkpoint with the weights,
the optimiser and the schedule. Checkpoints are written whole or not at all
(:class:`AtomicCheckpointIO`), and a non-finite loss stops training before anything is saved
(:class:`NonFiniteLoss`).

Several processes (GPUs, nodes) share each global batch: :class:`RunData` gives each its share,
and the mixers and the ADD loss act on the whole batch (see :mod:`mix2.distributed`).

Speed: the model runs in channels-last memory layout (about twice the default layout's speed
for a CPU training step), optionally under bf16 or fp16 autocast (``train.precision``; the
loss stays in fp32), and optionally over micro-batches (``train.micro_batch_size``, see
:mod:`mix2.models.micro_batches`). Training and validation clips stay in memory after their first read,
up to :data:`KEPT_INPUT_BYTES`. :class:`StepTimes` writes each epoch's clips per second and
the share of time spent waiting for data to ``logs/speed.csv``. For inference,
:class:`mix2.inference.InferenceModel` folds batch norm into the convolutions.
"""

from __future__ import annotations

import csv
import functools
import math
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint, TQDMProgressBar, WeightAveraging
from lightning.pytorch.loggers import Logger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities import rank_zero_only
from sklearn.metrics import f1_score
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mix2.augment import ClipAugmentation
from mix2.config import FeatureConfig, RunConfig, TrainConfig, pick_device
from mix2.distributed import BatchGroup, BatchShares
from mix2.errors import Mix2Error, SettingError
from mix2.features.frontend import model_input
from mix2.files import atomic_path
from mix2.losses import create_loss
from mix2.metrics import mean_average_precision
from mix2.mixing import Mix2, Mixer, create_mixer
from mix2.models import network_for, to_layout
from mix2.models.micro_batches import MicroBatches, in_micro_batches
from mix2.registry import LOSSES, MIXERS, MODELS

KEPT_INPUT_BYTES = 1 << 30
"""How many bytes of model inputs the training and the validation loader each keep in memory after their first
read (1 GiB, in each process and loader worker): a small dataset's clips, such as NIPS4B's 700 or the
demonstration's 350 (96 KB each for 3 s of 16-ms frames), are read from the cache files once, then from memory."""


class CachedClips(Dataset):
    """Clips read from the feature cache: item ``i`` is ``(features (1, mels, frames), labels (classes,))``.

    Features are scaled per clip, floored ``top_db`` under its loudest bin (see
    :func:`~mix2.features.frontend.model_input`). The first clips read are kept in memory, scaled,
    until they fill ``kept_bytes``; a kept clip is read again from there, the same values as from its file.

    Example:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> np.save(folder / "a.npy", np.zeros((4, 6), np.float16))
        >>> clips = CachedClips([folder / "a.npy"], np.ones((1, 2)), kept_bytes=4 * 6 * 4)
        >>> features, labels = clips[0]
        >>> tuple(features.shape), labels.tolist(), sorted(clips.kept)
        ((1, 4, 6), [1.0, 1.0], [0])
    """

    def __init__(
        self,
        feature_paths: list[Path],
        labels: np.ndarray,
        top_db: float | None = FeatureConfig.top_db,
        kept_bytes: int = 0,
    ) -> None:
        if len(feature_paths) != len(labels):
            raise ValueError("one label row per feature file is needed")
        self.feature_paths = feature_paths
        self.labels = torch.as_tensor(labels, dtype=torch.float32)
        self.top_db = top_db
        self.kept: dict[int, torch.Tensor] = {}
        self.bytes_left = kept_bytes

    def __len__(self) -> int:
        return len(self.feature_paths)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.kept.get(index)
        if features is None:
            features = model_input(torch.from_numpy(np.load(self.feature_paths[index]))[None], self.top_db)[0]
            size = features.numel() * features.element_size()
            if size <= self.bytes_left:
                self.kept[index], self.bytes_left = features, self.bytes_left - size
        return features, self.labels[index]


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one process's per-clip draws in one training epoch (SpecAugment, time shift, dropout).

    Independent streams for each ``(seed, epoch, rank)``; process 0's is the single-process seed.

    Example:
        >>> epoch_seed(0, 3) == epoch_seed(0, 3, rank=0) != epoch_seed(0, 3, rank=1)
        True
        >>> epoch_seed(0, 3) != epoch_seed(0, 4)
        True
    """
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1)[0])


def mixing_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's mixing draws: the same in every process, apart from every :func:`epoch_seed`.

    Example:
        >>> mixing_seed(0, 3) not in {epoch_seed(0, 3, rank) for rank in range(8)}
        True
    """
    return int(np.random.SeedSequence([seed, epoch], spawn_key=(1,)).generate_state(1)[0])


class EpochShuffle(Sampler[int]):
    """A fresh permutation of ``range(size)`` each epoch, a pure function of ``(seed, epoch)``, shared out over processes.

    Lightning calls :meth:`set_epoch` before each epoch, so a run resumed at epoch ``k`` sees
    exactly the order the uninterrupted run saw. With ``processes > 1`` the permutation is cut
    into global batches of ``batch_size`` (a last, partial one is dropped) and process ``rank``
    takes its even share of each, so the processes together take the batches one process would.

    Example:
        >>> sampler = EpochShuffle(5, seed=0)
        >>> sampler.set_epoch(1)
        >>> first = list(sampler)
        >>> sorted(first), first == list(sampler)
        ([0, 1, 2, 3, 4], True)
        >>> shares = [EpochShuffle(5, 0, batch_size=4, rank=r, processes=2) for r in (0, 1)]
        >>> for share in shares:
        ...     share.set_epoch(1)
        >>> list(shares[0]) + list(shares[1]) == first[:4]
        True
    """

    def __init__(self, size: int, seed: int, batch_size: int | None = None, rank: int = 0, processes: int = 1) -> None:
        self.shares = BatchShares(batch_size, rank, processes)
        self.size, self.seed, self.epoch = size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        return iter(self.shares.of(order))

    def __len__(self) -> int:
        return self.shares.length(self.size)


class Strided(Sampler[int]):
    """Process ``rank``'s share of ``range(size)`` for evaluation: ``rank, rank + processes, ...``.

    Example:
        >>> [list(Strided(5, rank, 2)) for rank in (0, 1)]
        [[0, 2, 4], [1, 3]]
    """

    def __init__(self, size: int, rank: int = 0, processes: int = 1) -> None:
        self.size, self.rank, self.processes = size, rank, processes

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.size, self.processes))

    def __len__(self) -> int:
        return len(range(self.rank, self.size, self.processes))


def clip_loader(
    paths: list[Path],
    labels: np.ndarray,
    train: TrainConfig,
    batch_size: int,
    sampler: Sampler[int] | None = None,
    drop_last: bool = False,
    top_db: float | None = FeatureConfig.top_db,
    kept_bytes: int = 0,
) -> DataLoader:
    """Batches of cached clips in ``sampler``'s order (default: as listed), scaled with ``top_db`` (see :func:`loader`),
    the first ``kept_bytes`` of them kept in memory for the loader's later epochs."""
    return loader(CachedClips(paths, labels, top_db, kept_bytes), train, batch_size, sampler, drop_last)


def loader(
    dataset: Dataset, train: TrainConfig, batch_size: int, sampler: Sampler[int] | None = None, drop_last: bool = False
) -> DataLoader:
    """Batches of ``dataset`` in ``sampler``'s order, loaded by ``train.num_workers`` workers.

    The workers' seeds come from a generator of the loader's own, never from the global one,
    whose state the augmentation of a resumed run must find as the uninterrupted run left it.
    Batches are built in pinned memory where training runs on a GPU, so that copies to it overlap compute.
    """
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=train.num_workers,
        generator=torch.Generator().manual_seed(train.seed),  # worker seeds, never the global generator
        persistent_workers=train.num_workers > 0,
        pin_memory=pick_device(train.accelerator).type == "cuda",
    )


class RunData(L.LightningDataModule):
    """A run's training and validation clips, each a ``(feature paths, labels (clips, classes))`` pair.

    Built into loaders once Lightning knows the processes: each takes its share of every global
    batch of training clips (:class:`EpochShuffle`) and every ``processes``-th validation clip.
    Each loader keeps the first :data:`KEPT_INPUT_BYTES` of its clips in memory after their first epoch.
    """

    def __init__(
        self,
        train: tuple[list[Path], np.ndarray],
        val: tuple[list[Path], np.ndarray],
        config: TrainConfig,
        top_db: float | None = FeatureConfig.top_db,
    ) -> None:
        super().__init__()
        self.train, self.val, self.config, self.top_db = train, val, config, top_db

    def train_dataloader(self) -> DataLoader:
        paths, labels = self.train
        rank, processes = self.trainer.global_rank, self.trainer.world_size
        batch = self.config.batch_size
        sampler = EpochShuffle(len(paths), self.config.seed, batch, rank, processes)
        drop_last = processes == 1 and len(paths) > batch  # a shared batch is always whole
        return clip_loader(paths, labels, self.config, batch // processes, sampler, drop_last, self.top_db, KEPT_INPUT_BYTES)

    def val_dataloader(self) -> DataLoader:
        paths, labels = self.val
        sampler = Strided(len(paths), self.trainer.global_rank, self.trainer.world_size)
        batch = self.config.batch_per_process
        return clip_loader(paths, labels, self.config, batch, sampler, top_db=self.top_db, kept_bytes=KEPT_INPUT_BYTES)


class NonFiniteLoss(Mix2Error):
    """The training or validation loss became NaN or infinite; training stops before saving."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, writing to ``<name>.partial`` and renaming it when complete.

    A kill during a save leaves the previous checkpoint of that name in place, never a broken one.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as partial:
            super().save_checkpoint(checkpoint, partial, storage_options)


class BestCheckpoint(ModelCheckpoint):
    """Lightning's checkpoint callback for the single best epoch, keeping the **latest** of equal scores.

    Lightning keeps the earliest epoch among equal values. On small validation splits the
    monitored score often saturates (mAP 1.0 from some epoch on) or stays flat, and the earliest
    such epoch is the least trained; a later epoch with the same validation score has seen the
    training data longer.

    ``monitor`` ``"last"`` keeps every epoch's weights in turn: ``best.ckpt`` is then the last
    epoch's, chosen by no validation score (``mode`` is not read), and written as a copy of the
    ``last.ckpt`` that the callback before this one (:func:`mix2.run.lightning_trainer`) has just
    written, instead of serialising the same epoch a second time.
    """

    def __init__(self, dirpath: Path, monitor: str, mode: str) -> None:
        super().__init__(
            dirpath=dirpath,
            filename="best",
            monitor=None if monitor == "last" else monitor,
            mode=mode,
            save_top_k=1,
            enable_version_counter=False,
        )

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        """Lightning's save (it sets the same two attributes after writing), or for ``"last"`` a copy of ``last.ckpt``."""
        if self.monitor is not None:
            super()._save_checkpoint(trainer, filepath)
            return
        if trainer.is_global_zero:
            with atomic_path(filepath) as partial:
                shutil.copyfile(Path(filepath).with_name("last.ckpt"), partial)
        trainer.strategy.barrier()
        self._last_global_step_saved, self._last_checkpoint_saved = trainer.global_step, filepath

    def check_monitor_top_k(self, trainer: L.Trainer, current: torch.Tensor | None = None) -> bool:
        if current is None or not self.best_k_models:
            return current is not None
        at_least_as_good = {"min": torch.le, "max": torch.ge}[self.mode]
        decision = bool(at_least_as_good(current, self.best_k_models[self.kth_best_model_path]))
        return trainer.strategy.reduce_boolean_decision(decision)


def ema_decay(half_life_epochs: float, steps_per_epoch: float) -> float:
    """The per-step decay of a moving average whose weights halve every ``half_life_epochs`` epochs.

    Example:
        >>> decay = ema_decay(2.0, steps_per_epoch=25)
        >>> round(decay, 5), round(decay ** 50, 6)  # after 2 epochs, a step's weight has halved
        (0.98623, 0.5)
    """
    return 0.5 ** (1 / (half_life_epochs * steps_per_epoch))


class WeightEma(WeightAveraging):
    """An exponential moving average of the weights and batch-norm statistics, with its half-life in epochs.

    Lightning's :class:`~lightning.pytorch.callbacks.WeightAveraging` keeps the average, from the
    weights after the first optimiser step (not the random initialisation), updated after every
    step; validation (and so the kept checkpoint), every checkpoint's
    ``state_dict`` and the model after training are the average, while the weights being trained
    travel in the checkpoint too, so a resumed run goes on exactly. The half-life is in epochs, so
    the same setting means the same smoothing on 700 clips or 70,000; the per-step decay
    (:func:`ema_decay`) is set once the steps per epoch are known. Each validation also scores
    the weights as trained (``val_loss_trained``, ``val_map_trained``), so one run measures what averaging did.
    """

    def __init__(self, half_life_epochs: float) -> None:
        super().__init__(avg_fn=self._average)
        self.half_life_epochs = half_life_epochs
        self.decay: float | None = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        steps_per_epoch = trainer.estimated_stepping_batches / trainer.max_epochs
        self.decay = ema_decay(self.half_life_epochs, steps_per_epoch)

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log ``val_loss_trained`` and ``val_map_trained``: the weights as trained, beside the average's ``val_loss`` and ``val_map``.

        Averaging leaves training itself unchanged, so these columns of ``logs/metrics.csv``
        compare the average against no average on the very same run: a paired measurement.
        """
        super().on_validation_epoch_end(trainer, pl_module)  # the trained weights back in the module
        if trainer.sanity_checking or not isinstance(pl_module, Classifier):
            return
        logits, targets = gathered([(pl_module(x.to(pl_module.device)).float().cpu(), y) for x, y in trainer.val_dataloaders])
        for name, value in validation_metrics(logits, targets, pl_module.config.train.threshold).items():
            if name in ("val_loss", "val_map"):
                pl_module.log(f"{name}_trained", value, sync_dist=True)

    def _average(self, average: torch.Tensor, current: torch.Tensor, updates: torch.Tensor) -> torch.Tensor:
        return self.decay * average + (1 - self.decay) * current


class StepTimes(Callback):
    """Each training epoch's speed, appended to a CSV: ``epoch, steps, clips, seconds, clips_per_s, data_wait_fraction``.

    ``data_wait_fraction`` is the share of the epoch spent between training steps: waiting for
    the next batch, plus the training loop's own bookkeeping. ``seconds`` covers the training
    steps and that wait, not validation. ``clips`` counts every process's clips, and the first
    process writes the file. A resumed run appends the epochs it trains.
    """

    COLUMNS = ("epoch", "steps", "clips", "seconds", "clips_per_s", "data_wait_fraction")

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.steps, self.clips, self.step_s, self.wait_s = 0, 0, 0.0, 0.0
        self.step_end = time.perf_counter()

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int) -> None:
        self.step_start = time.perf_counter()
        self.wait_s += self.step_start - self.step_end

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        self.step_end = time.perf_counter()
        self.step_s += self.step_end - self.step_start
        self.steps += 1
        self.clips += len(batch[0]) * trainer.world_size

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        seconds = self.step_s + self.wait_s
        row = [trainer.current_epoch + 1, self.steps, self.clips, round(seconds, 3)]
        row += [round(self.clips / max(seconds, 1e-9), 2), round(self.wait_s / max(seconds, 1e-9), 4)]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.is_file()
        with self.path.open("a", newline="") as handle:
            writer = csv.writer(handle)
            if new:
                writer.writerow(self.COLUMNS)
            writer.writerow(row)


class EpochLog(Logger):
    """``logs/metrics.csv``: one row per epoch, counted from 1, holding everything logged in it.

    The training loss and its terms, Mix2's member fractions, the validation loss, mAP and
    macro F1: Lightning logs the validation and the training values in separate calls, and
    this joins them by epoch. The file is rewritten atomically after each call. A resumed run
    keeps the rows of its first ``keep_epochs`` epochs (those its checkpoint holds) and goes on.
    """

    def __init__(self, path: str | Path, keep_epochs: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.rows: dict[int, dict[str, float]] = {}
        if keep_epochs and self.path.is_file():
            with self.path.open(newline="") as handle:
                for row in csv.DictReader(handle):
                    if int(row["epoch"]) <= keep_epochs:
                        self.rows[int(row["epoch"])] = {key: float(text) for key, text in row.items() if text != ""}

    @property
    def name(self) -> str:
        return "mix2"

    @property
    def version(self) -> str:
        return "logs"

    @rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        """Nothing: the run's settings are in its ``config.yaml``."""

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        values = dict(metrics)
        epoch = int(values.pop("epoch")) + 1  # Lightning counts from 0
        row = self.rows.setdefault(epoch, {"epoch": epoch})
        if step is not None:
            row["step"] = max(row.get("step", 0), step)
        row.update(values)
        columns = ["epoch", "step", *sorted({key for row in self.rows.values() for key in row} - {"epoch", "step"})]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as partial, partial.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, columns)
            writer.writeheader()
            for epoch in sorted(self.rows):
                writer.writerow({key: _plain(value) for key, value in self.rows[epoch].items()})


def _plain(value: float) -> int | float:
    """A logged value as the CSV shows it: whole numbers without a decimal point."""
    return int(value) if float(value).is_integer() else float(value)


class ProgressBar(TQDMProgressBar):
    """Lightning's progress bar, its epochs counted from 1 of the run's total as every message counts
    them, without the logger's version (``v_num``), which means nothing to a user."""

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        """As Lightning's, but the description is written once, counted from 1 (Lightning's shows ``Epoch 0`` first)."""
        total = self.total_train_batches
        self.train_progress_bar.reset(total=None if math.isinf(total) else int(total))
        self.train_progress_bar.set_description(f"Epoch {trainer.current_epoch + 1}/{trainer.max_epochs}")

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, int | str | float | dict[str, float]]:
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


def check_components(config: RunConfig) -> None:
    """Refuse, in one line, a model, mixer or loss that the configuration names but cannot build.

    Each is built once here with the configuration's settings (a model of two classes), so
    that a wrong name or setting stops a run before any data is read or folder written.
    """
    for section, name, registry in (("train", "model", MODELS), ("mixing", "method", MIXERS), ("loss", "name", LOSSES)):
        value = getattr(getattr(config, section), name)
        if value not in registry.names():
            raise SettingError(section, name, f"must be one of: {', '.join(registry.names())}, got {value!r}")
    builds = (
        ("train", lambda: network_for(config, num_classes=2)),
        ("mixing", lambda: create_mixer(config.mixing)),
        ("loss", lambda: create_loss(config.loss)),
    )
    for section, build in builds:
        try:
            build()
        except (TypeError, ValueError) as err:
            raise Mix2Error(f"{section}: {err}") from None


class Classifier(L.LightningModule):
    """A multi-label classifier with its augmentation, loss and optimiser.

    Args:
        config: the run configuration, as :meth:`RunConfig.to_dict` gives it.
        classes: class names, in label-column order.
        pos_weight: BCE's weight on each class's positives (see :func:`~mix2.losses.positive_weights`), or ``None``.
        initialised_from: where the network's first weights came from (``train.init``; see
            :meth:`mix2.transfer.InitSource.record`), kept in every checkpoint; ``None`` for a network from scratch.
    """

    def __init__(
        self,
        config: dict,
        classes: list[str],
        pos_weight: list[float] | None = None,
        initialised_from: dict | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.config = RunConfig.from_dict(config)
        self.classes = list(classes)
        self.model = network_for(self.config, len(classes))
        self.frozen_encoder = self.config.train.encoder_lr_factor == 0
        for parameter in self.encoder_parameters():
            parameter.requires_grad_(not self.frozen_encoder)
        if self.config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if self.config.train.compile:
            self.model.compile()  # in place: the state dict keeps its keys, so checkpoints load without it
        self.loss = create_loss(self.config.loss, None if pos_weight is None else torch.tensor(pos_weight))
        self.augment = ClipAugmentation(self.config.augment)
        self.mixer = create_mixer(self.config.mixing)
        self.unmixed = Mixer()  # for the final epochs of mixing.unmixed_final_fraction
        self.thresholds: np.ndarray | None = None  # per class, tuned on validation after training
        self._validation: list[tuple[torch.Tensor, torch.Tensor]] = []

    def encoder_parameters(self) -> list[nn.Parameter]:
        """The network's parameters but its classifier's (the ``classifier`` attribute of every registered network)."""
        head = {id(p) for p in self.model.classifier.parameters()}
        return [p for p in self.model.parameters() if id(p) not in head]

    def on_train_batch_start(self, batch: Any, batch_index: int) -> None:
        """A frozen encoder (``train.encoder_lr_factor`` 0) runs in evaluation mode, so that its batch norms keep
        their statistics. Set before every step: Lightning sets each submodule's mode itself around validation."""
        if self.frozen_encoder:
            for name, child in self.model.named_children():
                if name != "classifier":
                    child.eval()

    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return to_layout(x, self.config.train.channels_last)

    @property
    def chunked_model(self) -> nn.Module | MicroBatches:
        """The model, run in chunks of ``train.micro_batch_size`` clips where that is set."""
        return in_micro_batches(self.model, self.config.train.micro_batch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, 1, mels, frames)`` features -> ``(batch, classes)`` logits."""
        return self.chunked_model(self._layout(x))

    @property
    def mixed_epochs(self) -> int:
        """How many epochs mix, from the first: all but the last ``mixing.unmixed_final_fraction`` of them, rounded."""
        epochs = self.config.train.epochs
        return epochs - round(self.config.mixing.unmixed_final_fraction * epochs)

    def on_train_epoch_start(self) -> None:
        seed_epoch(self, self.config.train.seed, self.mixer)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        """This process's share of a global batch -> the loss (see :mod:`mix2.distributed`)."""
        x, targets = batch
        group = BatchGroup.current()
        mixer = self.mixer if self.current_epoch < self.mixed_epochs else self.unmixed
        mixed = mixer(self.chunked_model, self._layout(self.augment(x)), targets, group)
        with torch.autocast(x.device.type, enabled=False):  # under bf16 or fp16 training, the loss stays fp32
            at_least_fp32 = torch.promote_types(mixed.logits.dtype, torch.float32)
            logits, targets, embedding = (t.to(at_least_fp32) for t in (mixed.logits, mixed.targets, mixed.embedding))
            terms = self.loss.terms(logits, targets, embedding, group)
            loss = sum(terms.values())
        finite = bool(torch.isfinite(loss))
        if not group.all_true(finite, loss.device):  # every process stops, or the others would wait for it
            value = "NaN or infinite in another process" if finite else loss.item()
            raise NonFiniteLoss(
                f"the training loss became {value} at epoch {self.current_epoch + 1}, step {self.global_step + 1}"
            )
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(x), sync_dist=True)
        if len(terms) > 1:  # each term apart, to see whether one swamps the others
            for name, value in terms.items():
                self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=len(x), sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        log_member_fractions(self, self.mixer)

    def on_validation_epoch_start(self) -> None:
        """Average each device's batch-norm running statistics, so that every process validates one model."""
        BatchGroup.current().average([buffer for buffer in self.model.buffers() if buffer.is_floating_point()])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        x, targets = batch
        self._validation.append((self(x).float().detach().cpu(), targets.cpu()))  # bf16 or fp16 logits made fp32

    def on_validation_epoch_end(self) -> None:
        """Loss, mAP and macro F1 over the whole validation split, every process's share gathered.

        mAP is over the validation classes that have a positive; where none has, it is not logged.
        """
        logits, targets = gathered(self._validation)
        self._validation.clear()
        if not np.isfinite(logits).all():  # raised before this epoch's checkpoints are written
            raise NonFiniteLoss(f"the validation scores became NaN or infinite at epoch {self.current_epoch + 1}")
        for name, value in validation_metrics(logits, targets, self.config.train.threshold).items():
            # Every process holds the same values; sync_dist only keeps Lightning from warning.
            self.log(name, value, prog_bar=name != "val_loss", sync_dist=True)

    def configure_optimizers(self):
        """AdamW, with the learning rate's ``train.schedule`` (see :func:`warmup_cosine`); all but the
        classifier at ``train.encoder_lr_factor`` times the rate, left out where that is 0."""
        train = self.config.train
        # One group where every parameter shares the rate, as checkpoints from before the factor hold.
        groups: list[dict[str, Any]] = [{"params": [p for p in self.parameters() if p.requires_grad]}]
        if train.encoder_lr_factor not in (0, 1):
            encoder = {id(p) for p in self.encoder_parameters()}
            groups = [
                {"params": [p for p in self.parameters() if id(p) not in encoder]},
                {"params": self.encoder_parameters(), "lr": train.lr * train.encoder_lr_factor},
            ]
        return adamw_with_schedule(self, groups, train)


def adamw_with_schedule(module: L.LightningModule, groups: list[dict[str, Any]], train: TrainConfig) -> dict[str, Any]:
    """AdamW over the parameter ``groups`` at ``train.lr`` (a group's own ``lr`` where it has one), with
    ``train.schedule`` (see :func:`warmup_cosine`), as Lightning's ``configure_optimizers`` returns it."""
    optimizer = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)
    if train.schedule == "cosine_per_epoch":
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, train.epochs))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
    total_steps = int(module.trainer.estimated_stepping_batches)
    warmup_steps = round(train.warmup_epochs * total_steps / max(1, train.epochs))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, functools.partial(warmup_cosine, total_steps=total_steps, warmup_steps=warmup_steps)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


def seed_epoch(module: L.LightningModule, seed: int, mixer: Mixer) -> None:
    """Seed this epoch's augmentation and dropout from ``(seed, epoch, rank)``, its mixing from ``(seed, epoch)``."""
    torch.manual_seed(epoch_seed(seed, module.current_epoch, module.global_rank))
    mixer.reseed(mixing_seed(seed, module.current_epoch))


def log_member_fractions(module: L.LightningModule, mixer: Mixer) -> None:
    """Log the fraction of this epoch's steps on which Mix2 chose each member (nothing for another mixer)."""
    if isinstance(mixer, Mix2):
        steps = max(1, sum(mixer.counts.values()))
        for name, count in mixer.counts.items():
            module.log(f"mix2_{name}", count / steps, sync_dist=True)  # the same in every process
        mixer.reset_counts()


def gathered(parts: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[np.ndarray, np.ndarray]:
    """This process's ``(logits, targets)`` batches -> every process's ``(clips, classes)`` logits and targets, in rank order."""
    group = BatchGroup.current()
    logits, targets = (group.gather_arrays(torch.cat(columns).numpy()) for columns in zip(*parts))
    return logits, targets


def validation_metrics(logits: np.ndarray, targets: np.ndarray, threshold: float) -> dict[str, float]:
    """``val_loss`` (BCE), ``val_map`` (over the classes with a positive; left out where none has) and ``val_macro_f1``
    (at ``threshold``) of validation ``(clips, classes)`` logits and targets."""
    loss = nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits), torch.from_numpy(targets))
    scores = torch.sigmoid(torch.from_numpy(logits)).numpy()
    metrics = {"val_loss": float(loss)}
    average_precision = mean_average_precision(targets, scores)
    if average_precision is not None:
        metrics["val_map"] = average_precision
    macro_f1 = f1_score(targets.astype(int), (scores >= threshold).astype(int), average="macro", zero_division=0)
    return {**metrics, "val_macro_f1": float(macro_f1)}


def warmup_cosine(step: int, total_steps: int, warmup_steps: int) -> float:
    """The learning rate's factor at optimiser step ``step``: linear warm-up, then a cosine decay to 0.

    Rises from ``1 / warmup_steps`` to 1 over the first ``warmup_steps`` steps (no warm-up where
    that is 0), then falls along half a cosine to 0 at ``total_steps``.

    Example:
        >>> [round(warmup_cosine(step, total_steps=10, warmup_steps=2), 3) for step in range(11)]
        [0.5, 1.0, 1.0, 0.962, 0.854, 0.691, 0.5, 0.309, 0.146, 0.038, 0.0]
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
