"""Typed run configuration, with YAML in and out.

The defaults are the paper's setup (Moummad et al. 2024): 16 kHz audio, 128 mel bins, window
512, hop 128; SpecAugment and circular time shift; AdamW at lr 1e-2, batch 128, 100 epochs,
cosine schedule; BCE; threshold 0.5.

Weight decay defaults to 0.01, not the paper's stated 1e-6: the paper's published numbers were
trained with AdamW's default of 0.01, because its code never passed the argument.

Batch-norm momentum defaults to 0.1 (PyTorch's default), not torchvision's 0.01: at 0.01 the
running statistics trail the weights by about 100 steps, so a run of a few hundred steps (a
small dataset, or the demonstration) is validated with stale statistics. ``bn_momentum: 0.01``
gives torchvision's model exactly.

The built-in synthetic chorus is a demonstration, so :func:`default_config` trains it with the
small-data recipe (:data:`RECIPES`), shortened to 4.5 to 5.5 minutes on 2 CPU cores, and with Mix2
(the ``mix2`` preset), which this project is about.

Example:
    >>> cfg = default_config("chorus")
    >>> cfg.train.epochs, cfg.train.batch_size, cfg.features.n_mels
    (120, 32, 128)
    >>> RunConfig.from_dict(cfg.to_dict()) == cfg
    True
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import yaml

from mix2.errors import Mix2Error, SettingError, input_error

CHORUS = "chorus"


@dataclass
class DataConfig:
    """Where the clips come from and how they are cut and split.

    ``source`` is ``"chorus"`` (the built-in synthetic frog chorus), an AnuraSet folder, an
    events folder, or a multi-hot CSV table. ``variant`` picks an AnuraSet variant
    (``anuraset``, ``anuraset36n`` or ``anuraset36``). ``split_seed`` draws the splits the data
    does not give; it is separate from the training seed, so runs with several training seeds
    share one test set. ``val_split`` is how validation is carved out of train: ``random``
    groups, or ``stratified`` by class (see :func:`mix2.data.splits.assign_splits`). For
    cross-validation, ``val_folds`` (2 or more; 0: off) cuts the recordings outside test into that
    many folds, drawn as ``val_split`` says, and fold ``val_fold`` (from 1) is validation instead of
    ``val_fraction`` of them.
    """

    source: str = CHORUS
    variant: str = "anuraset"
    window_s: float = 3.0
    hop_s: float = 1.0
    min_overlap_s: float = 0.0
    test_fraction: float = 1 / 3
    val_fraction: float = 0.1
    split_seed: int = 0
    val_split: str = "random"
    val_folds: int = 0
    val_fold: int = 1
    frequent_fraction: float = 0.1
    common_fraction: float = 0.2
    chorus_seed: int = 0
    chorus_recordings: int = 60


@dataclass
class FeatureConfig:
    """Log-mel front-end: a 3 s clip gives ``(n_mels, 1 + 3 * sample_rate_hz // hop_length)``.

    ``top_db`` scales each clip for the model: its dB values are floored ``top_db`` under its
    loudest bin and mapped to [0, 1] at ``1 / top_db`` per dB (see
    :func:`~mix2.features.logmel.normalize_per_clip`); ``None`` is plain min-max scaling.
    It is applied when clips are read, so it is not part of the cached features.
    """

    sample_rate_hz: int = 16_000
    n_mels: int = 128
    n_fft: int = 512
    hop_length: int = 128
    f_min_hz: float = 0.0
    f_max_hz: float | None = None
    top_db: float | None = 80.0

    def logmel_settings(self) -> dict[str, Any]:
        """The settings of the log-mel front-end (:class:`~mix2.features.logmel.LogMel`'s arguments), which key the cache."""
        return {name: value for name, value in dataclasses.asdict(self).items() if name != "top_db"}


@dataclass
class AugmentConfig:
    """SpecAugment and circular time shift, each drawn per clip.

    ``mask_fill``: what SpecAugment writes into its masks, ``mean`` (each clip's mean, a level
    the clip really has) or ``zero`` (the floor of the scaled features, the paper's code).
    """

    specaugment: bool = True
    freq_masks: int = 3
    max_freq_mask_bins: int = 9
    time_masks: int = 6
    max_time_mask_frames: int = 29
    time_shift: bool = True
    max_shift_frames: int | None = None
    mask_fill: str = "mean"


MIX2_PROBABILITIES = {"mixup": 0.25, "manifold_mixup": 0.5, "multimix": 0.25}


@dataclass
class MixupSettings:
    """``mixup``: each example's weight is drawn from Beta(``alpha``, ``alpha``)."""

    alpha: float = 1.0


@dataclass
class ManifoldMixupSettings:
    """``manifold_mixup``: Mixup at a stage drawn each step from ``stages`` (the 960-d embedding, as the paper's code)."""

    alpha: float = 1.0
    stages: list[str] = field(default_factory=lambda: ["embedding"])


@dataclass
class MultiMixSettings:
    """``multimix``: ``examples`` mixes of the whole batch (``None``: the batch size), weights from Dirichlet(``alpha``)."""

    alpha: float = 0.2
    examples: int | None = None


@dataclass
class Mix2Settings:
    """``mix2``: its members, each drawn at a step with its probability (a ``none`` member leaves steps unmixed)."""

    members: dict[str, float] = field(default_factory=lambda: dict(MIX2_PROBABILITIES))


@dataclass
class MixingConfig:
    """Which mixing regulariser runs at each training step (``method``), and each mixer's settings under its name.

    Only the settings of the mixer that runs (and of Mix2's members) are read; see :mod:`mix2.mixing`.

    ``unmixed_final_fraction`` trains the last fraction of the epochs without mixing (rounded to
    whole epochs; 0, the default and the paper's, mixes to the end): the network then fits clean
    clips, as it will see them, after mixing has regularised it.

    ``partners`` says how Mixup and Manifold Mixup pair examples: ``random`` (a permutation of
    the batch, the default and the paper's) or ``balanced`` (drawn class-balanced within the
    batch, after Balanced-MixUp; see :func:`mix2.mixing.class_balanced_partners`). MultiMix mixes
    the whole batch either way.
    """

    method: str = "none"
    mixup: MixupSettings = field(default_factory=MixupSettings)
    manifold_mixup: ManifoldMixupSettings = field(default_factory=ManifoldMixupSettings)
    multimix: MultiMixSettings = field(default_factory=MultiMixSettings)
    mix2: Mix2Settings = field(default_factory=Mix2Settings)
    unmixed_final_fraction: float = 0.0
    partners: str = "random"


@dataclass
class AddSettings:
    """The ADD term of ``bce+add`` (see :mod:`mix2.losses`): its ``form`` (``soft`` or ``hard``), four lambdas, and ``weight``.

    ``weight`` multiplies the whole ADD term against BCE, on top of the lambdas: 0.1, measured on
    NIPS4B's validation split (Mix2 + ADD, small-data recipe: best validation mAP 0.355 at 0.1
    against 0.252 at 1, where ADD was as large as BCE all run).
    """

    weight: float = 0.1
    form: str = "soft"
    lambda_mu: float = 1.0
    lambda_sigma_p: float = 1.0
    lambda_mu_n: float = 1.0
    lambda_sigma_n: float = 1.0


@dataclass
class PretrainConfig:
    """Self-supervised pretraining (``mix2 pretrain``; see :mod:`mix2.contrastive`).

    Each epoch draws ``crops_per_epoch`` crops at random over the recordings of ``folders``
    (weighted by duration). A crop gives two views: windows of the run's length starting up to
    ``max_view_offset_s`` apart in the same recording, each with another recording's crop added
    as background at ``lambda`` times its RMS, ``lambda ~ U(0, max_background_rms_ratio)`` (0: no
    background), then the run's SpecAugment and time shift. The network's embedding goes through a
    projection head (960 -> 512 -> ``projection_dim``) and the views are matched by InfoNCE at
    ``temperature``; the run's mixer (``mixing``) mixes the first view's batch and its instance
    targets alike (i-Mix). ``val_crops`` fixed crops are scored without mixing after each epoch.
    """

    folders: list[str] = field(default_factory=list)
    crops_per_epoch: int = 2048
    val_crops: int = 256
    max_view_offset_s: float = 1.0
    max_background_rms_ratio: float = 0.5
    temperature: float = 0.2
    projection_dim: int = 128


@dataclass
class LossConfig:
    """The loss: ``bce``, or ``bce+add`` with the ADD term's settings under ``add``.

    ``pos_weight`` weighs each class's positive examples in BCE by its training counts:
    ``none``, ``sqrt`` (the square root of negatives over positives) or ``balanced`` (negatives
    over positives).
    """

    name: str = "bce"
    pos_weight: str = "none"
    add: AddSettings = field(default_factory=AddSettings)


@dataclass
class TrainConfig:
    """Model, optimiser and trainer settings.

    ``deterministic`` asks torch for its deterministic algorithms, warning (not failing) for the
    few GPU operations that have none, so the same seed and data on the same machine give the
    same run.

    ``precision`` is ``fp32``, ``bf16`` (autocast to bfloat16, on CPU or GPU) or ``fp16``
    (autocast to float16 with loss scaling; GPU only). The loss is always computed in fp32.

    ``micro_batch_size`` runs the model over each batch in chunks of that many clips, and takes
    the loss once over the whole batch: gradient accumulation in which MultiMix still mixes the
    whole batch and the ADD loss still sees all of its pairs. ``None`` (default) runs the batch
    at once. Batch norm normalises each chunk by its own statistics, as it does per device in
    multi-GPU training.

    ``schedule`` is the learning rate's: ``warmup_cosine`` (linear warm-up over
    ``warmup_epochs``, then a cosine decay to 0, stepped at every optimiser step) or
    ``cosine_per_epoch`` (the paper's: cosine over the epochs, stepped once per epoch, no warm-up).

    ``monitor`` chooses the checkpoint kept as ``best.ckpt``: ``val_map`` (mean average
    precision over the validation classes that have a positive; threshold-free), ``val_loss``,
    ``val_macro_f1`` (at ``threshold``), or ``last``: the last epoch, whatever validation says. Where
    the validation split has no positive at all, ``val_map`` falls back to ``val_loss``.

    ``ema_half_life_epochs`` validates, checkpoints and keeps an exponential moving average of the
    weights (and batch-norm statistics) whose weights halve every that many epochs (see
    :class:`mix2.training.WeightEma`); ``None`` (default) uses the weights as trained.

    ``compile`` runs the network through ``torch.compile`` (in place, so checkpoints keep their
    keys): a few minutes of compilation at the start of every process, the first training step and
    the first validation each. Off by default: on this project's 2-core CPU machine a compiled
    training step was no faster than PyTorch's own (``benchmarks/speed.py``), so it never pays the
    compilation back there; on GPUs it often does, so measure yours.

    ``init`` starts the network from another checkpoint's (a run on other data, or a pretrained
    network), the classifier re-made where the classes differ; ``encoder_lr_factor`` scales the
    learning rate of all but the classifier, 0 freezing it (a linear probe). See :mod:`mix2.transfer`.

    ``devices`` (per node) and ``num_nodes`` train data-parallel through Lightning's ``strategy``
    (``auto`` or ``ddp``). ``batch_size`` is the global batch, split evenly over the
    ``devices * num_nodes`` processes, and the mixers and the ADD loss act on the whole global
    batch (see :mod:`mix2.distributed`). ``sync_batchnorm`` normalises over the global batch
    too (GPU only); without it each device normalises its own share.
    """

    model: str = "mobilenetv3_large"
    bn_momentum: float = 0.1
    epochs: int = 100
    batch_size: int = 128
    lr: float = 1e-2
    weight_decay: float = 0.01
    schedule: str = "warmup_cosine"
    warmup_epochs: float = 5.0
    monitor: str = "val_map"
    ema_half_life_epochs: float | None = None
    seed: int = 0
    threshold: float = 0.5
    num_workers: int = 0
    accelerator: str = "auto"
    channels_last: bool = True
    compile: bool = False
    init: str | None = None
    encoder_lr_factor: float = 1.0
    deterministic: bool = True
    precision: str = "fp32"
    micro_batch_size: int | None = None
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    sync_batchnorm: bool = False

    @property
    def processes(self) -> int:
        """How many processes share each batch: ``devices * num_nodes``."""
        return self.devices * self.num_nodes

    @property
    def batch_per_process(self) -> int:
        """Each process's share of the global batch."""
        return self.batch_size // self.processes

    def check(self, here: bool = True) -> None:
        """Refuse settings that cannot run, in one line naming the setting, before any work starts.

        ``here``: also refuse what this machine cannot run (a GPU accelerator, fp16 or
        synchronised batch norm without a GPU); a run folder prepared on a CPU for GPUs
        elsewhere leaves it out.
        """
        require = _requirer("train", self)
        require("epochs", _is_int(self.epochs) and self.epochs >= 1, "must be a whole number of epochs, 1 or more")
        for name in ("batch_size", "devices", "num_nodes"):
            require(name, _is_int(getattr(self, name)) and getattr(self, name) >= 1, "must be a positive integer")
        require("lr", _is_number(self.lr) and self.lr > 0, "must be a positive number")
        require("weight_decay", _is_number(self.weight_decay) and self.weight_decay >= 0, "must be 0 or more")
        require("warmup_epochs", _is_number(self.warmup_epochs) and self.warmup_epochs >= 0, "must be 0 or more")
        ema = self.ema_half_life_epochs
        require(
            "ema_half_life_epochs", ema is None or (_is_number(ema) and ema > 0), "must be a positive number of epochs or null"
        )
        require("compile", isinstance(self.compile, bool), "must be true or false")
        require(
            "init", self.init is None or (isinstance(self.init, str) and self.init != ""), "must be a checkpoint's path or null"
        )
        factor = self.encoder_lr_factor
        require("encoder_lr_factor", _is_number(factor) and 0 <= factor <= 1, "must be in [0, 1] (0 freezes the encoder)")
        require("bn_momentum", _is_number(self.bn_momentum) and 0 < self.bn_momentum <= 1, "must be in (0, 1]")
        require("seed", _is_int(self.seed) and 0 <= self.seed < 2**32, "must be a whole number from 0 to 2**32 - 1")
        require("threshold", _is_number(self.threshold) and 0 < self.threshold < 1, "must be a probability between 0 and 1")
        require(
            "num_workers", _is_int(self.num_workers) and self.num_workers >= 0, "must be 0 (load in the training process) or more"
        )
        require("precision", self.precision in PRECISIONS, f"must be one of: {', '.join(PRECISIONS)}")
        require("schedule", self.schedule in SCHEDULES, f"must be one of: {', '.join(SCHEDULES)}")
        require("monitor", self.monitor in MONITORS, f"must be one of: {', '.join(MONITORS)}")
        require("strategy", self.strategy in STRATEGIES, f"must be one of: {', '.join(STRATEGIES)}")
        require("accelerator", self.accelerator in ACCELERATORS, f"must be one of: {', '.join(ACCELERATORS)}")
        if self.batch_size % self.processes:
            raise SettingError(
                "train",
                "batch_size",
                f"is the global batch, split evenly over {self.processes} processes "
                f"({self.devices} devices x {self.num_nodes} nodes); make it a multiple of {self.processes}, got {self.batch_size}",
            )
        micro = self.micro_batch_size
        require(
            "micro_batch_size",
            micro is None or (_is_int(micro) and 1 <= micro <= self.batch_per_process),
            f"must be an integer from 1 to the batch size of one process ({self.batch_per_process})",
        )
        if not here or pick_device(self.accelerator).type == "cuda":
            return
        if self.accelerator in ("gpu", "cuda"):
            raise SettingError(
                "train", "accelerator", f"is {self.accelerator}, but PyTorch sees no GPU on this machine; use cpu or auto"
            )
        if self.precision == "fp16":
            raise SettingError("train", "precision", "fp16 needs a GPU; on a CPU use bf16")
        if self.sync_batchnorm:
            raise SettingError("train", "sync_batchnorm", "needs GPUs: PyTorch's SyncBatchNorm does not run on a CPU")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _requirer(section: str, settings: Any) -> Callable[[str, bool, str], None]:
    """``require(name, ok, problem)``: raise :class:`SettingError` for ``section.name`` (with its value) unless ``ok``."""

    def require(name: str, ok: bool, problem: str) -> None:
        if not ok:
            raise SettingError(section, name, f"{problem}, got {getattr(settings, name)!r}")

    return require


MASK_FILLS = ("mean", "zero")
"""What SpecAugment writes into its masks (see :class:`AugmentConfig`)."""
PARTNERS = ("random", "balanced")
"""How Mixup and Manifold Mixup draw each example's partner (see :class:`MixingConfig`)."""
VAL_SPLITS = ("random", "stratified")
"""How validation is carved out of the training recordings (:func:`mix2.data.splits.assign_splits`)."""
POS_WEIGHTS = ("none", "sqrt", "balanced")
"""How BCE weighs each class's positives (see :class:`LossConfig`)."""
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed"}
"""Training precisions, and Lightning's name for each."""
SCHEDULES = ("warmup_cosine", "cosine_per_epoch")
"""Learning-rate schedules (see :class:`TrainConfig`)."""
MONITORS = {"val_map": "max", "val_loss": "min", "val_macro_f1": "max", "last": "max"}  # "last": no score
"""Validation metrics that can choose the kept checkpoint, and whether higher or lower is better."""
STRATEGIES = ("auto", "ddp")
"""Lightning strategies mix2 trains with: ``auto`` (one device, or DDP over several) and ``ddp``."""
ACCELERATORS = ("auto", "cpu", "gpu", "cuda")
"""Lightning accelerators mix2 trains on: ``auto`` takes a GPU where PyTorch sees one."""


def pick_device(accelerator: str = "auto") -> torch.device:
    """The device for the front-end and inference: the GPU where ``accelerator`` allows one and one is present, else the CPU."""
    wants_gpu = accelerator in ("auto", "gpu", "cuda")
    return torch.device("cuda" if wants_gpu and torch.cuda.is_available() else "cpu")


@dataclass
class RunConfig:
    """Everything one run needs; saved as ``config.yaml`` in the run folder."""

    data: DataConfig = field(default_factory=DataConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    mixing: MixingConfig = field(default_factory=MixingConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    out_dir: str = "runs"

    def check(self, here: bool = True) -> None:
        """Refuse settings that cannot run, in one line naming the setting (see :meth:`TrainConfig.check`).

        The components named (model, mixer, loss) are checked where they are built:
        :func:`mix2.training.check_components`.
        """
        self.train.check(here)
        data = _requirer("data", self.data)
        data("window_s", _is_number(self.data.window_s) and self.data.window_s > 0, "must be a positive number of seconds")
        data("hop_s", _is_number(self.data.hop_s) and self.data.hop_s > 0, "must be a positive number of seconds")
        data(
            "min_overlap_s",
            _is_number(self.data.min_overlap_s) and 0 <= self.data.min_overlap_s <= self.data.window_s,
            f"must be from 0 to the window's {self.data.window_s} s",
        )
        for name in ("test_fraction", "val_fraction"):
            data(name, _is_number(getattr(self.data, name)) and 0 < getattr(self.data, name) < 1, "must be between 0 and 1")
        data("val_split", self.data.val_split in VAL_SPLITS, f"must be one of: {', '.join(VAL_SPLITS)}")
        data(
            "val_folds",
            _is_int(self.data.val_folds) and self.data.val_folds != 1 and self.data.val_folds >= 0,
            "must be 0 (off) or 2 or more",
        )
        if self.data.val_folds:
            data(
                "val_fold",
                _is_int(self.data.val_fold) and 1 <= self.data.val_fold <= self.data.val_folds,
                f"must be from 1 to val_folds ({self.data.val_folds})",
            )
        else:  # a fold asked for without the folds to choose it from would be silently ignored
            data("val_fold", self.data.val_fold == 1, "must stay 1 unless val_folds (2 or more) cuts folds")
        for name in ("split_seed", "chorus_seed"):
            data(name, _is_int(getattr(self.data, name)) and getattr(self.data, name) >= 0, "must be a whole number, 0 or more")
        data("chorus_recordings", _is_int(self.data.chorus_recordings) and self.data.chorus_recordings >= 3, "must be 3 or more")
        features = _requirer("features", self.features)
        for name in ("sample_rate_hz", "n_mels", "n_fft", "hop_length"):
            features(
                name, _is_int(getattr(self.features, name)) and getattr(self.features, name) >= 1, "must be a positive integer"
            )
        top_db = self.features.top_db
        features(
            "top_db",
            top_db is None or (_is_number(top_db) and top_db > 0),
            "must be a positive number of dB or null (min-max scaling)",
        )
        augment = _requirer("augment", self.augment)
        augment("mask_fill", self.augment.mask_fill in MASK_FILLS, f"must be one of: {', '.join(MASK_FILLS)}")
        for name in ("freq_masks", "max_freq_mask_bins", "time_masks", "max_time_mask_frames"):
            augment(name, _is_int(getattr(self.augment, name)) and getattr(self.augment, name) >= 0, "must be 0 or more")
        loss = _requirer("loss", self.loss)
        loss("pos_weight", self.loss.pos_weight in POS_WEIGHTS, f"must be one of: {', '.join(POS_WEIGHTS)}")
        add = _requirer("loss.add", self.loss.add)
        add("weight", _is_number(self.loss.add.weight) and self.loss.add.weight >= 0, "must be 0 or more")
        pretrain = _requirer("pretrain", self.pretrain)
        for name in ("crops_per_epoch", "val_crops", "projection_dim"):
            pretrain(
                name,
                _is_int(getattr(self.pretrain, name)) and getattr(self.pretrain, name) >= 2,
                "must be a whole number, 2 or more",
            )
        for name in ("max_view_offset_s", "max_background_rms_ratio"):
            pretrain(name, _is_number(getattr(self.pretrain, name)) and getattr(self.pretrain, name) >= 0, "must be 0 or more")
        temperature = self.pretrain.temperature
        pretrain("temperature", _is_number(temperature) and temperature > 0, "must be a positive number")
        mixing = _requirer("mixing", self.mixing)
        fraction = self.mixing.unmixed_final_fraction
        mixing("unmixed_final_fraction", _is_number(fraction) and 0 <= fraction <= 1, "must be from 0 to 1")
        mixing("partners", self.mixing.partners in PARTNERS, f"must be one of: {', '.join(PARTNERS)}")
        examples = self.mixing.multimix.examples
        uses_multimix = self.mixing.method == "multimix" or (
            self.mixing.method == "mix2" and "multimix" in self.mixing.mix2.members
        )
        if uses_multimix and examples is not None and examples % self.train.processes:
            raise SettingError(
                "mixing.multimix",
                "examples",
                f"({examples}) must be a multiple of the {self.train.processes} processes that share a batch",
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict: safe to store in a checkpoint and to dump as YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], origin: str = "configuration", base: RunConfig | None = None) -> RunConfig:
        """Build from a nested dict; unknown keys are an error naming ``origin``.

        Settings the dict leaves out keep their value in ``base`` (default: the dataclasses'
        defaults); a section it names is merged setting by setting, any other value replaced whole.
        Settings under their former flat names (:data:`FORMER_NAMES`, in configurations, run
        folders, experiment plans and checkpoints written before mixers and losses grouped their
        settings) are read under their grouped names.
        """
        values = _upgrade(values, origin)
        return _build(cls, values if base is None else _overlay(base, values), origin)

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path, base: RunConfig | None = None) -> RunConfig:
        """Read a YAML configuration; the settings it leaves out keep their value in ``base`` (see :meth:`from_dict`)."""
        try:
            values = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise input_error(path, "no such configuration file") from None
        except yaml.YAMLError as err:
            raise input_error(path, f"not valid YAML ({str(err).splitlines()[0]})") from None
        return cls.from_dict(values or {}, origin=str(path), base=base)


FORMER_NAMES: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("mixing", "mixup_alpha"): [("mixup", "alpha"), ("manifold_mixup", "alpha")],  # the two shared one alpha
    ("mixing", "manifold_stages"): [("manifold_mixup", "stages")],
    ("mixing", "multimix_alpha"): [("multimix", "alpha")],
    ("mixing", "multimix_examples"): [("multimix", "examples")],
    ("mixing", "mix2_members"): [("mix2", "members")],
    ("loss", "add_weight"): [("add", "weight")],
    ("loss", "add_form"): [("add", "form")],
    **{("loss", f"add_lambda_{name}"): [("add", f"lambda_{name}")] for name in ("mu", "sigma_p", "mu_n", "sigma_n")},
}
"""``(section, former flat name)`` -> where its value goes now, within the section."""


def _upgrade(values: Any, origin: str) -> Any:
    """``values`` with settings under their :data:`FORMER_NAMES` moved to their grouped names (a new dict; ``values`` is kept)."""
    if not isinstance(values, dict):
        return values
    upgraded = dict(values)
    for (section_name, former), targets in FORMER_NAMES.items():
        section = upgraded.get(section_name)
        if not isinstance(section, dict) or former not in section:
            continue
        section = upgraded[section_name] = dict(section)
        value = section.pop(former)
        for group_name, name in targets:
            group = section.get(group_name, {})
            if not isinstance(group, dict):
                continue  # _build names the group that is not a mapping
            group = section[group_name] = dict(group)
            if name in group:
                raise Mix2Error(
                    f"{origin}: {section_name}.{former} is the former name of {section_name}.{group_name}.{name}; give only one"
                )
            group[name] = value
    return upgraded


def _overlay(base: Any, values: Any) -> Any:
    """``base``'s settings as a nested dict with ``values``' in their place: where both hold a section (a dataclass in
    ``base``, a mapping in ``values``), setting by setting; anywhere else ``values``' value whole. Names ``base`` lacks
    pass through, for :func:`_build` to refuse."""
    if not (dataclasses.is_dataclass(base) and isinstance(values, dict)):
        return values
    merged = dataclasses.asdict(base)
    for name, value in values.items():
        merged[name] = _overlay(getattr(base, name, None), value)
    return merged


def _build(cls: type, values: Any, origin: str, section: str = "") -> Any:
    """``cls`` from a nested dict; problems name the setting as the YAML writes it (``train.epochs``)."""
    if not isinstance(values, dict):
        where = f"'{section.rstrip('.')}'" if section else "the configuration"
        raise Mix2Error(f"{origin}: {where} must be a mapping of settings, got {values!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        name = unknown[0]
        close = difflib.get_close_matches(str(name), list(fields), n=1)
        hint = (
            f"; did you mean {section}{close[0]}?"
            if close
            else f"; {section.rstrip('.') or 'the top level'} has: {', '.join(fields)}"
        )
        others = f" (and {len(unknown) - 1} more)" if len(unknown) > 1 else ""
        raise Mix2Error(f"{origin}: unknown setting {section}{name}{others}{hint}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name)
        kwargs[name] = _build(type(default), value, origin, f"{section}{name}.") if dataclasses.is_dataclass(default) else value
    return cls(**kwargs)


EQUAL_PAIR = 0.5
PRESETS: dict[str, dict[str, Any]] = {
    "baseline-10ep": {"specaugment": False, "time_shift": False, "method": "none", "epochs": 10},
    "baseline": {"specaugment": False, "time_shift": False, "method": "none"},
    "specaug": {"specaugment": True, "time_shift": False, "method": "none"},
    "timeshift": {"specaugment": True, "time_shift": True, "method": "none"},
    "mixup": {"specaugment": True, "time_shift": True, "method": "mixup"},
    "manifold": {"specaugment": True, "time_shift": True, "method": "manifold_mixup"},
    "multimix": {"specaugment": True, "time_shift": True, "method": "multimix"},
    "mixup+manifold": {"members": {"mixup": EQUAL_PAIR, "manifold_mixup": EQUAL_PAIR}},
    "mixup+multimix": {"members": {"mixup": EQUAL_PAIR, "multimix": EQUAL_PAIR}},
    "manifold+multimix": {"members": {"manifold_mixup": EQUAL_PAIR, "multimix": EQUAL_PAIR}},
    "mix2": {"members": MIX2_PROBABILITIES},
    # Beyond the paper's Table I: the ADD loss (Almudevar et al.) without and with Mix2.
    "add": {"specaugment": True, "time_shift": True, "method": "none", "loss": "bce+add"},
    "mix2+add": {"members": MIX2_PROBABILITIES, "loss": "bce+add"},
}
TABLE_ONE = list(PRESETS)[: list(PRESETS).index("mix2") + 1]
"""The presets that are the rows of the paper's Table I, in its order."""


def apply_preset(config: RunConfig, name: str) -> RunConfig:
    """Set ``config`` to a row of the paper's Table I; each row adds to the one before.

    ``baseline-10ep`` and ``baseline``: no augmentation, no mixing (10 and the configured
    epochs); ``specaug`` adds SpecAugment; ``timeshift`` adds the circular time shift; the
    mixing rows (``mixup``, ``manifold``, ``multimix``, the two-method rows and ``mix2``) add
    their mixer on top of both. Two-method rows draw each member with probability 0.5; ``mix2``
    draws mixup, manifold mixup and MultiMix with 0.25, 0.5 and 0.25. Beyond the paper, ``add``
    and ``mix2+add`` are ``timeshift`` and ``mix2`` with the loss ``bce+add``; the other presets
    leave the loss as configured.
    """
    if name not in PRESETS:
        raise Mix2Error(f"unknown preset '{name}'; choose one of: {', '.join(PRESETS)}")
    preset = PRESETS[name]
    members = preset.get("members")
    config.augment.specaugment = preset.get("specaugment", True)
    config.augment.time_shift = preset.get("time_shift", True)
    config.mixing.method = "mix2" if members else preset["method"]
    if members:
        config.mixing.mix2.members = dict(members)
    config.train.epochs = preset.get("epochs", config.train.epochs)
    config.loss.name = preset.get("loss", config.loss.name)
    return config


def _changed(recipe: dict[str, dict[str, Any]], **changes: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``recipe`` with the settings of ``changes`` (section -> settings) replaced."""
    return {section: {**values, **changes.get(section, {})} for section, values in recipe.items()}


def _frames(hop_length: int) -> dict[str, dict[str, Any]]:
    """The recipe sections for frames of ``hop_length`` samples, with SpecAugment's time masks as long in seconds as
    the paper's (up to 29 frames of 128 samples, 232 ms at 16 kHz)."""
    return {"features": {"hop_length": hop_length}, "augment": {"max_time_mask_frames": 29 * 128 // hop_length}}


# small-data before 2026-12-04: the paper's 8-ms frames, 40 epochs (13 to 22 minutes a NIPS4B run, one
# thread); the README's numbers measured with it name it. The last epoch kept, chosen on out-of-fold
# predictions over all training recordings.
SMALL_DATA_V1: dict[str, dict[str, Any]] = {
    "train": {
        "model": "mobilenetv3_large",
        "epochs": 40,
        "batch_size": 32,
        "lr": 3e-3,
        "schedule": "warmup_cosine",
        "warmup_epochs": 2.0,
        "monitor": "last",
    },
    "loss": {"pos_weight": "sqrt"},
    **_frames(128),
}

# small-data from 2026-12-04 to 2026-12-05: the paper's network for 160 epochs of 16-ms frames (hop 256), which
# halve each step's work, SpecAugment's time masks keeping their length in seconds; about 40 minutes a NIPS4B run,
# one thread. The README's NIPS4B tables were measured with it, and name it.
SMALL_DATA_V2 = _changed(SMALL_DATA_V1, train={"epochs": 160}, **_frames(256))

# small-data on 2026-12-05: small-data-v2's frames and optimisation, with the network at half width, whose step takes
# half the time, for 320 epochs: about 40 minutes a NIPS4B run, one thread, as small-data-v2's 160.
SMALL_DATA_V3 = _changed(SMALL_DATA_V2, train={"model": "mobilenetv3_large_050", "epochs": 320})

RECIPES: dict[str, dict[str, dict[str, Any]]] = {
    # The paper's optimisation, exactly: per-epoch cosine without warm-up, plain BCE.
    "paper": {
        "train": {
            "model": "mobilenetv3_large",
            "epochs": 100,
            "batch_size": 128,
            "lr": 1e-2,
            "schedule": "cosine_per_epoch",
            "warmup_epochs": 0.0,
            "monitor": "val_map",
        },
        "loss": {"pos_weight": "none"},
        **_frames(128),
    },
    # Chosen on NIPS4B's validation split and on other draws of the chorus (README, "Does it learn?"):
    # small-data-v3's half-width network on 16-ms frames, for 640 epochs instead of 320, where Mix2's
    # validation mAP was still rising: about an hour a NIPS4B run, one thread.
    "small-data": _changed(SMALL_DATA_V3, train={"epochs": 640}),
    "small-data-v3": SMALL_DATA_V3,
    "small-data-v2": SMALL_DATA_V2,
    "small-data-v1": SMALL_DATA_V1,
}
"""Optimisation recipes: the sections and settings each sets, the same settings in each, so the
last one applied decides. Besides optimisation they set the network and the frame hop, with
SpecAugment's time masks at the same length in seconds (a recipe trades width and time resolution
for epochs); they leave the rest of augmentation and mixing (the presets' business) alone, so a
recipe combines with any preset."""


ENCODER_SETTINGS = ("features", "augment", "train.model")
"""The settings of a recipe that a pretrained network shares with the runs it starts: the front-end's frames,
SpecAugment's time masks counted in those frames, and the network. ``mix2 pretrain --recipe`` takes these alone
(the optimisation stays pretraining's), so that its network fits the recipe's runs."""


def apply_recipe(config: RunConfig, name: str, only: tuple[str, ...] | None = None) -> RunConfig:
    """Set ``config``'s optimisation, frames and network to the recipe ``name`` (see :data:`RECIPES`); with
    ``only`` (sections such as ``"features"`` or single settings such as ``"train.model"``; see
    :data:`ENCODER_SETTINGS`), only those settings."""
    if name not in RECIPES:
        raise Mix2Error(f"unknown recipe '{name}'; choose one of: {', '.join(RECIPES)}")
    for section, values in RECIPES[name].items():
        for key, value in values.items():
            if only is None or section in only or f"{section}.{key}" in only:
                setattr(getattr(config, section), key, value)
    return config


def recipe_for_encoder(config: RunConfig) -> str | None:
    """The first recipe whose front-end (its ``features`` settings: the frames) and network ``config`` has, leaving
    out those whose front-end and network are the defaults': ``small-data`` for 16-ms frames into the half-width
    network, ``small-data-v2`` for them into the paper's, ``None`` for the paper's frames and network (any run
    without a recipe has them) or for a pair no recipe sets. A checkpoint fits the runs of its front-end and network."""

    def has_encoder(settings: RunConfig, name: str) -> bool:
        frames = RECIPES[name]["features"].items()
        same_frames = all(getattr(settings.features, key) == value for key, value in frames)
        return same_frames and settings.train.model == RECIPES[name]["train"]["model"]

    defaults = RunConfig()
    return next((name for name in RECIPES if has_encoder(config, name) and not has_encoder(defaults, name)), None)


DEMO_EPOCHS = 120
"""Epochs of the demonstration run on the built-in chorus: the small-data recipe in 4.5 to 5.5 minutes on 2 CPU cores."""
DEMO_PRESET = "mix2"
"""The preset of the demonstration run: Mix2, chosen on other draws of the chorus (``benchmarks/chorus_worlds.py``)."""


def default_config(source: str = CHORUS) -> RunConfig:
    """The configuration for ``source``: the paper's, with warm-up; the built-in chorus gets the small-data recipe, shortened, with Mix2.

    Every setting is the paper's except the learning-rate schedule (linear warm-up, then
    cosine, stepped per optimiser step), the kept checkpoint (best validation mAP; the
    small-data recipe keeps the last epoch) and the input scaling (80 dB under each clip's
    loudest bin); ``apply_recipe(config, "paper")`` restores the paper's schedule. Data of
    your own trains without mixing unless a preset says otherwise; the demonstration trains
    with :data:`DEMO_PRESET`.
    """
    config = RunConfig(data=DataConfig(source=source))
    if source == CHORUS:
        apply_recipe(config, "small-data")
        apply_preset(config, DEMO_PRESET)
        config.train.epochs = DEMO_EPOCHS
    return config
