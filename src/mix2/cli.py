"""The ``mix2`` command: one verb per job, a thin parser over :mod:`mix2.run`.

    mix2 train                        # a short Mix2 run on the built-in synthetic chorus
    mix2 train --data PATH            # AnuraSet folder, events folder or multi-hot CSV
    mix2 train --recipe small-data    # the optimisation measured for small data on a CPU (paper: the paper's)
    mix2 train --preset mix2          # a row of the paper's Table I
    mix2 train --mixing multimix      # one mixer on top of the configured augmentation
    mix2 train --resume RUN_DIR       # continue a killed run from its last checkpoint
    mix2 train --init CKPT            # start from another run's network (or a pretrained one)
    mix2 pretrain --data FOLDER...    # self-supervised pretraining on recordings without labels
    mix2 train --devices 4            # data-parallel over 4 GPUs (see README, Training on a cluster)
    mix2 evaluate RUN_DIR             # re-score the test split with the best checkpoint
    mix2 baseline RUN_DIR             # log-mel statistics + logistic regression on the run's clips
    mix2 experiment DIR --data PATH --presets timeshift mix2 --seeds 0 1 2   # tables over seeds
    mix2 report DIR...                # one HTML page of runs and experiments
    mix2 download anuraset DIR        # AnuraSet from Zenodo, resumable and checksum-verified
    mix2 predict CKPT PATH...         # which species call when, over long recordings
    mix2 embed CKPT PATH...           # each window's embedding, for clustering, search or a head of your own
    mix2 quantize RUN_DIR             # an int8 network for predict, checked on the run's test clips
    mix2 predict CKPT PATH... --shard 3/10 --out preds/3   # one job of 10 over a large archive
    mix2 merge preds/* --out preds/all                     # join the 10 jobs' tables

Problems with the input are printed as one line, ``mix2: error: <file>: <problem>``, and the
command exits with status 2 (130 when training was interrupted and can be resumed).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from operator import attrgetter
from pathlib import Path

import numpy as np
import pandas as pd

from mix2 import __version__, losses, mixing  # noqa: F401  (registers the losses and mixers the options list)
from mix2.config import (
    CHORUS,
    DEMO_EPOCHS,
    ENCODER_SETTINGS,
    PRESETS,
    RECIPES,
    TABLE_ONE,
    RunConfig,
    apply_preset,
    apply_recipe,
    default_config,
    recipe_for_encoder,
)
from mix2.data.anuraset import VARIANTS
from mix2.data.download import DATASETS, ZENODO_API, download
from mix2.distributed import is_first_process
from mix2.engines import engine_names
from mix2.errors import Mix2Error, SettingError, TrainingInterrupted
from mix2.experiment_plan import Experiment
from mix2.predict import INFERENCE_PRECISIONS, embed, merge_shards, parse_shard, predict
from mix2.registry import LOSSES, MIXERS, MODELS


def _recipe(name: str, key: str) -> str:
    """The training setting ``key`` of the recipe ``name`` as the help texts write it (``3e-3``), read from
    :data:`RECIPES` so that the help follows the recipes."""
    value = RECIPES[name]["train"][key]
    return f"{value:.0e}".replace("e-0", "e-") if isinstance(value, float) else str(value)


# (flag, config section (dotted where grouped: loss.add), field, type, help), by the group --help lists them in
DATA, TRAINING, MIXING, HARDWARE, OUTPUT = "data", "model and training", "mixing and loss", "hardware", "output"
TRAIN_OPTIONS = {
    DATA: [
        ("--variant", "data", "variant", str, f"AnuraSet variant: {', '.join(VARIANTS)}"),
        ("--window-s", "data", "window_s", float, "window length in seconds (3)"),
        ("--hop-s", "data", "hop_s", float, "hop between windows of an events folder, in seconds (1)"),
        ("--min-overlap-s", "data", "min_overlap_s", float, "overlap an event needs to label a window (0: any)"),
        ("--split-seed", "data", "split_seed", int, "seed of the splits the data does not give (0)"),
        ("--val-split", "data", "val_split", str, "validation carved out of train: random or stratified by class (random)"),
        (
            "--val-folds",
            "data",
            "val_folds",
            int,
            "cross-validation: cut the recordings outside test into this many folds (0: off)",
        ),
        ("--val-fold", "data", "val_fold", int, "with --val-folds: the fold that validates, from 1 (1)"),
        ("--top-db", "features", "top_db", float, "each clip's input floor, in dB under its loudest bin (80)"),
    ],
    TRAINING: [
        (
            "--model",
            "train",
            "model",
            str,
            f"network: {', '.join(MODELS.names())} (the paper's: {_recipe('paper', 'model')}; small-data: {_recipe('small-data', 'model')})",
        ),
        (
            "--epochs",
            "train",
            "epochs",
            int,
            f"epochs (paper: {_recipe('paper', 'epochs')}; small-data: {_recipe('small-data', 'epochs')}; chorus demo: {DEMO_EPOCHS})",
        ),
        (
            "--batch-size",
            "train",
            "batch_size",
            int,
            f"batch size (paper: {_recipe('paper', 'batch_size')}; small-data: {_recipe('small-data', 'batch_size')})",
        ),
        (
            "--lr",
            "train",
            "lr",
            float,
            f"AdamW peak learning rate (paper: {_recipe('paper', 'lr')}; small-data: {_recipe('small-data', 'lr')})",
        ),
        ("--weight-decay", "train", "weight_decay", float, "AdamW weight decay (0.01, what the paper's numbers used)"),
        ("--schedule", "train", "schedule", str, "lr schedule: warmup_cosine (per step) or cosine_per_epoch (the paper's)"),
        ("--warmup-epochs", "train", "warmup_epochs", float, "epochs of linear warm-up in warmup_cosine (5; small-data: 2)"),
        (
            "--monitor",
            "train",
            "monitor",
            str,
            "what chooses best.ckpt: val_map, val_loss, val_macro_f1, or last: the last epoch (val_map; small-data: last)",
        ),
        (
            "--init",
            "train",
            "init",
            str,
            "start the network from this checkpoint's (another run's); new classes get a new classifier",
        ),
        (
            "--encoder-lr-factor",
            "train",
            "encoder_lr_factor",
            float,
            "the learning rate of all but the classifier, as a fraction of --lr; 0 freezes it: a linear probe (1)",
        ),
        (
            "--ema-half-life-epochs",
            "train",
            "ema_half_life_epochs",
            float,
            "validate, checkpoint and keep a moving average of the weights, halving every this many epochs (off)",
        ),
        ("--seed", "train", "seed", int, "training seed: initialisation, data order, augmentation and mixing (0)"),
        ("--threshold", "train", "threshold", float, "decision threshold on probabilities, in (0, 1) (0.5)"),
    ],
    MIXING: [
        ("--mixing", "mixing", "method", str, f"mixer: {', '.join(MIXERS.names())} (none)"),
        (
            "--unmixed-final-fraction",
            "mixing",
            "unmixed_final_fraction",
            float,
            "train the last fraction of the epochs without mixing, e.g. 0.25 (0: mix to the end)",
        ),
        (
            "--mix-partners",
            "mixing",
            "partners",
            str,
            "Mixup's and Manifold Mixup's partners: random, or balanced by class within the batch (random)",
        ),
        ("--loss", "loss", "name", str, f"loss: {', '.join(LOSSES.names())}; bce+add adds the ADD term on the embedding (bce)"),
        ("--pos-weight", "loss", "pos_weight", str, "BCE weight of each class's positives: none, sqrt, balanced (none)"),
        ("--add-weight", "loss.add", "weight", float, "weight of the ADD term against BCE, with --loss bce+add (0.1)"),
    ],
    HARDWARE: [
        ("--accelerator", "train", "accelerator", str, "Lightning accelerator: auto, cpu, gpu (auto)"),
        ("--precision", "train", "precision", str, "fp32, bf16 (autocast on CPU or GPU) or fp16 (autocast, GPU only) (fp32)"),
        (
            "--micro-batch-size",
            "train",
            "micro_batch_size",
            int,
            "run each batch through the model in chunks of this many clips; the loss, MultiMix and ADD still see the whole batch",
        ),
        ("--num-workers", "train", "num_workers", int, "data-loading worker processes (0)"),
        ("--devices", "train", "devices", int, "devices (GPUs) per node; the batch is split evenly over devices x nodes (1)"),
        ("--num-nodes", "train", "num_nodes", int, "nodes (machines) (1)"),
        ("--strategy", "train", "strategy", str, "Lightning strategy: auto or ddp (auto)"),
    ],
}
ALL_OPTIONS = [option for options in TRAIN_OPTIONS.values() for option in options]
PRETRAIN_OPTIONS = [
    *(option for option in ALL_OPTIONS if option[0] in {
        "--model", "--weight-decay", "--schedule", "--seed", "--mixing", "--accelerator", "--precision", "--num-workers",
        "--micro-batch-size", "--devices", "--num-nodes", "--strategy"}),
    ("--epochs", "train", "epochs", int, "epochs (40)"),
    ("--batch-size", "train", "batch_size", int, "pairs of views per batch: each pair's negatives are the others (64)"),
    ("--lr", "train", "lr", float, "AdamW peak learning rate (1e-3)"),
    ("--warmup-epochs", "train", "warmup_epochs", float, "epochs of linear warm-up (2)"),
    ("--crops-per-epoch", "pretrain", "crops_per_epoch", int, "pairs of views drawn each epoch (2048)"),
    ("--val-crops", "pretrain", "val_crops", int, "fixed pairs scored after each epoch (256)"),
    ("--max-view-offset-s", "pretrain", "max_view_offset_s", float, "the two views of a crop start up to this far apart (1)"),
    (
        "--max-background-rms-ratio",
        "pretrain",
        "max_background_rms_ratio",
        float,
        "each view gets another recording as background, up to this ratio of RMS (0.5; 0: none)",
    ),
    ("--temperature", "pretrain", "temperature", float, "InfoNCE temperature (0.2)"),
    ("--projection-dim", "pretrain", "projection_dim", int, "the projection head's output (128)"),
]  # fmt: skip
"""The options of ``mix2 pretrain``: those of training that apply, and pretraining's own."""
FLAGS = {(section, field): flag for flag, section, field, *_ in [*ALL_OPTIONS, *PRETRAIN_OPTIONS]}
"""The flag that sets each ``(section, field)`` of the configuration."""


def setting_problem(err: SettingError) -> str:
    """A setting's problem in one line, naming the flag that sets it where it has one:
    ``--lr (train.lr) must be a positive number, got -1.0``."""
    flag = FLAGS.get((err.section, err.name))
    where = f"{flag} ({err.section}.{err.name})" if flag else f"{err.section}.{err.name}"
    return f"{where} {err.problem}"


TRAIN_EXAMPLES = """examples:
  mix2 train                                         # the demonstration on the built-in chorus, with Mix2 (about 5 minutes)
  mix2 train --data ../shared/data/nips4b --recipe small-data --preset mix2 --out runs/nips4b
"""

# What a preset or an experiment's --seeds set for each run; an experiment does not take them.
PER_RUN_FLAGS = {"--mixing", "--seed", "--no-specaugment", "--no-time-shift"}
# How one run spreads over devices; an experiment trains each run in one process.
SINGLE_RUN_FLAGS = {"--devices", "--num-nodes", "--strategy", "--sync-batchnorm"}


def _add_run_options(parser: argparse.ArgumentParser, per_run: bool = True) -> dict[str, argparse._ArgumentGroup]:
    """The options that set up a run's configuration, in their help groups, which it returns.

    ``per_run=False`` leaves out :data:`PER_RUN_FLAGS` and :data:`SINGLE_RUN_FLAGS`.
    """
    groups = {name: parser.add_argument_group(name) for name in (DATA, TRAINING, MIXING, HARDWARE, OUTPUT)}
    groups[DATA].add_argument("--data", help="dataset path, or 'chorus' for the built-in synthetic chorus (the default)")
    groups[DATA].add_argument("--config", help="YAML configuration to start from (flags override it)")
    groups[TRAINING].add_argument(
        "--recipe",
        choices=list(RECIPES),
        help=f"optimisation recipe: paper ({_recipe('paper', 'epochs')} epochs, batch {_recipe('paper', 'batch_size')}, "
        f"lr {_recipe('paper', 'lr')}), small-data ({_recipe('small-data', 'epochs')} epochs of 16-ms frames into "
        f"{_recipe('small-data', 'model')}, batch {_recipe('small-data', 'batch_size')}, lr {_recipe('small-data', 'lr')}), "
        f"small-data-v3 ({_recipe('small-data-v3', 'epochs')} epochs of them), "
        f"small-data-v2 ({_recipe('small-data-v2', 'epochs')} epochs of them into {_recipe('small-data-v2', 'model')}) "
        f"or small-data-v1 ({_recipe('small-data-v1', 'epochs')} epochs of the paper's 8-ms frames)",
    )
    for group, options in TRAIN_OPTIONS.items():
        for flag, _, _, kind, help_text in options:
            if per_run or flag not in PER_RUN_FLAGS | SINGLE_RUN_FLAGS:
                groups[group].add_argument(flag, type=kind, help=help_text)
    if per_run:
        groups[TRAINING].add_argument("--no-specaugment", action="store_true", help="switch SpecAugment off")
        groups[TRAINING].add_argument("--no-time-shift", action="store_true", help="switch the circular time shift off")
        groups[HARDWARE].add_argument(
            "--sync-batchnorm", action="store_true", help="batch norm over the global batch, across devices (GPU only)"
        )
    groups[HARDWARE].add_argument(
        "--compile", action="store_true", help="run the network through torch.compile (minutes to compile; measure first)"
    )
    groups[OUTPUT].add_argument("--quiet", action="store_true", help="no progress bars")
    return groups


def _shard(text: str) -> tuple[int, int]:
    try:
        return parse_shard(text)
    except Mix2Error as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _window_job_arguments(parser: argparse.ArgumentParser, out: str) -> None:
    """The arguments every job over long recordings takes (predict, embed)."""
    parser.add_argument(
        "checkpoint", help="a checkpoint written by 'mix2 train' (runs/.../checkpoints/best.ckpt), or the run folder"
    )
    parser.add_argument("paths", nargs="+", help="audio files (wav, flac, mp3, ogg), or folders searched recursively")
    parser.add_argument("--out", default=out, help=f"output folder; run again to resume ({out})")
    parser.add_argument("--hop-s", type=float, default=1.0, help="seconds between window starts (1)")
    parser.add_argument("--batch-size", type=int, default=64, help="windows per model call, across recordings (64)")
    parser.add_argument(
        "--exact-windows",
        action="store_true",
        help="transform each window alone, exactly as evaluation does, not cut from its block's log-mel (slower)",
    )
    parser.add_argument(
        "--engine",
        choices=engine_names(),
        default="auto",
        help="what runs the network: auto (onnxruntime, then openvino, then torch: the first installed), or one of them (auto)",
    )
    parser.add_argument("--shard", type=_shard, help="I/N: only the recordings of shard I of N (one job of N; then mix2 merge)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mix2", description="Multi-label animal-sound classification with Mix2.", allow_abbrev=False
    )
    parser.add_argument("--version", action="version", version=f"mix2 {__version__}")
    verbs = parser.add_subparsers(dest="verb", title="verbs", metavar="VERB")

    train_parser = verbs.add_parser(
        "train",
        help="train, keep the best checkpoint on validation, evaluate on test",
        description="Train on a dataset, keep the best checkpoint on validation, evaluate on the test split.",
        epilog=TRAIN_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    groups = _add_run_options(train_parser)
    groups[TRAINING].add_argument("--preset", choices=list(PRESETS), help="a row of the paper's Table I (flags override it)")
    groups[OUTPUT].add_argument("--out", help="folder that holds run folders (runs)")
    groups[OUTPUT].add_argument("--run-dir", help="write this run into exactly this folder")
    groups[OUTPUT].add_argument(
        "--resume", metavar="RUN_DIR", help="continue this run from its last checkpoint, with its own settings (no other options)"
    )
    groups[OUTPUT].add_argument(
        "--prepare-only",
        action="store_true",
        help="write the run folder and fill the feature cache, train nothing; then train it with --resume (on a cluster)",
    )
    groups[OUTPUT].add_argument(
        "--no-baseline",
        action="store_true",
        help="do not fit the log-mel statistics + logistic regression baseline after training",
    )

    pretrain_parser = verbs.add_parser(
        "pretrain",
        help="self-supervised pretraining on recordings without labels, for train --init and embed",
        description="Pretrain the network on recordings without labels: two views of each crop told apart from the batch's others.",
        epilog="example:\n  mix2 pretrain --data ../shared/data/nips4b_unlabelled ../shared/data/nips4b --recipe small-data\n"
        "  mix2 train --data ../shared/data/nips4b --recipe small-data --init runs/pretrain-.../checkpoints/best.ckpt",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    pretrain_parser.add_argument("--data", nargs="+", help="folders of recordings (searched recursively) or audio files")
    pretrain_parser.add_argument(
        "--config", help="YAML configuration to start from; what it leaves out keeps pretraining's defaults (flags override it)"
    )
    pretrain_parser.add_argument(
        "--recipe",
        choices=list(RECIPES),
        help="the recipe you will fine-tune with (mix2 train --recipe R --init): pretrain its network on its frames, so "
        f"the checkpoint fits it (small-data: {_recipe('small-data', 'model')}, 16 ms); the optimisation stays "
        "pretraining's (without it: the paper's network and 8-ms frames)",
    )
    for flag, _, _, kind, help_text in PRETRAIN_OPTIONS:
        pretrain_parser.add_argument(flag, type=kind, help=help_text)
    pretrain_parser.add_argument("--out", help="folder that holds run folders (runs)")
    pretrain_parser.add_argument("--run-dir", help="write this run into exactly this folder")
    pretrain_parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue this pretraining run from its last checkpoint, with its own settings"
    )
    pretrain_parser.add_argument(
        "--prepare-only",
        action="store_true",
        help="write the run folder (settings, recordings), pretrain nothing; then pretrain it with --resume (on a cluster)",
    )
    pretrain_parser.add_argument("--quiet", action="store_true", help="no progress bars")

    baseline_parser = verbs.add_parser(
        "baseline",
        help="fit log-mel statistics + logistic regression on a run's clips and score its test split (baseline.json)",
        allow_abbrev=False,
    )
    baseline_parser.add_argument("run_dir", help="a run folder written by 'mix2 train'")
    baseline_parser.add_argument("--quiet", action="store_true", help="no progress bars")

    evaluate_parser = verbs.add_parser(
        "evaluate", help="score a run's test split and write metrics and plots", allow_abbrev=False
    )
    evaluate_parser.add_argument("run_dir", help="a run folder written by 'mix2 train'")
    evaluate_parser.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="best: the epoch kept on validation (checkpoints/best.ckpt); last: the final epoch (best)",
    )
    evaluate_parser.add_argument("--quiet", action="store_true", help="no progress bars")

    quantize_parser = verbs.add_parser(
        "quantize",
        help="quantise a run's network to int8 (OpenVINO, NNCF) and check int8 and bf16 against fp32 on its test clips",
        allow_abbrev=False,
    )
    quantize_parser.add_argument("run_dir", help="a finished run folder written by 'mix2 train'")
    quantize_parser.add_argument(
        "--checkpoint", choices=["best", "last"], default="best", help="the checkpoint to quantise (best)"
    )
    quantize_parser.add_argument("--quiet", action="store_true", help="no progress bars")

    experiment_parser = verbs.add_parser(
        "experiment",
        help="train presets x seeds (x variants) and write the paper's tables and figures",
        description="Plan an experiment in DIR (or resume the one there), train its unfinished runs, aggregate.",
        allow_abbrev=False,
    )
    experiment_parser.add_argument("dir", help="the experiment folder; run again to resume")
    experiment_parser.add_argument(
        "--presets", nargs="+", help=f"presets, in table order (the paper's Table I: {' '.join(TABLE_ONE)})"
    )
    experiment_parser.add_argument("--seeds", nargs="+", type=int, help="training seeds (0 1 2)")
    experiment_parser.add_argument(
        "--variants", nargs="+", choices=list(VARIANTS), help="AnuraSet variants: the first gives Table I, the others Table II"
    )
    _add_run_options(experiment_parser, per_run=False)
    steps = experiment_parser.add_mutually_exclusive_group()
    steps.add_argument(
        "--plan-only", action="store_true", help="write experiment.yaml and commands.txt (one command per run), train nothing"
    )
    steps.add_argument("--run-index", type=int, help="train only run N of commands.txt (an array job's task), aggregate nothing")
    steps.add_argument(
        "--aggregate-only", action="store_true", help="write the tables and figures of the finished runs, train nothing"
    )

    predict_parser = verbs.add_parser(
        "predict", help="score long recordings window by window: scores, detections, Raven tables", allow_abbrev=False
    )
    _window_job_arguments(predict_parser, "predictions")
    predict_parser.add_argument(
        "--thresholds",
        default="0.5",
        help="a number (0.5), 'checkpoint' (per class, tuned on validation at training), or a CSV with class,threshold",
    )
    predict_parser.add_argument(
        "--precision",
        choices=list(INFERENCE_PRECISIONS),
        default="fp32",
        help="fp32; bf16 (PyTorch, or OpenVINO with --engine openvino); int8 (OpenVINO, once mix2 quantize offered it) (fp32)",
    )
    predict_parser.add_argument("--parquet", action="store_true", help="also write scores.parquet (needs pyarrow)")

    embed_parser = verbs.add_parser(
        "embed", help="the network's embedding of every window of long recordings, for your own analyses", allow_abbrev=False
    )
    _window_job_arguments(embed_parser, "embeddings")
    embed_parser.add_argument("--parquet", action="store_true", help="also write embeddings.parquet (needs pyarrow)")

    merge_parser = verbs.add_parser(
        "merge",
        help="join the output folders of the shards of one prediction or embedding (mix2 predict|embed --shard)",
        allow_abbrev=False,
    )
    merge_parser.add_argument("folders", nargs="+", help="the output folders of shards 1 to N")
    merge_parser.add_argument("--out", required=True, help="the folder for the joined tables")
    merge_parser.add_argument(
        "--parquet", action="store_true", help="also write scores.parquet or embeddings.parquet (needs pyarrow)"
    )

    download_parser = verbs.add_parser(
        "download", help="download a published dataset, resumable and checksum-verified", allow_abbrev=False
    )
    download_parser.add_argument("dataset", choices=list(DATASETS), help="anuraset: Zenodo record 8342596, about 10.5 GB")
    download_parser.add_argument("dir", help="the folder to fill; then 'mix2 train --data DIR'")
    download_parser.add_argument("--keep-archive", action="store_true", help="keep the verified zip after unpacking")
    download_parser.add_argument("--zenodo-api", default=ZENODO_API, help=f"Zenodo's API root ({ZENODO_API})")
    download_parser.add_argument("--quiet", action="store_true", help="no progress bar")

    report_parser = verbs.add_parser("report", help="one self-contained HTML page of runs and experiments", allow_abbrev=False)
    report_parser.add_argument("dirs", nargs="+", help="run folders and experiment folders")
    report_parser.add_argument("--out", help="the HTML file (DIR/report.html for one folder, else mix2-report.html)")
    return parser


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run configuration: the YAML file or the defaults for ``--data``, then the flags."""
    config = RunConfig.from_yaml(args.config) if args.config else default_config(args.data or CHORUS)
    if args.data:
        config.data.source = args.data
    if args.recipe:
        apply_recipe(config, args.recipe)
    if getattr(args, "preset", None):
        apply_preset(config, args.preset)
    for flag, section, field, _, _ in ALL_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"), None)
        if value is not None:
            setattr(attrgetter(section)(config), field, value)
    if getattr(args, "out", None):
        config.out_dir = args.out
    if getattr(args, "no_specaugment", False):
        config.augment.specaugment = False
    if getattr(args, "no_time_shift", False):
        config.augment.time_shift = False
    if getattr(args, "sync_batchnorm", False):
        config.train.sync_batchnorm = True
    if getattr(args, "compile", False):
        config.train.compile = True
    return config


def pretraining_from_args(args: argparse.Namespace) -> RunConfig:
    """The pretraining configuration: pretraining's defaults for ``--data``, with the YAML file's settings over them,
    then the frames of ``--recipe``, then the flags."""
    from mix2.pretrain import pretraining_config

    config = pretraining_config(args.data or [])
    if args.config:
        config = RunConfig.from_yaml(args.config, base=config)
    if args.data:
        config.pretrain.folders = list(args.data)
    if args.recipe:
        apply_recipe(config, args.recipe, ENCODER_SETTINGS)
    for flag, section, field, _, _ in PRETRAIN_OPTIONS:
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            setattr(attrgetter(section)(config), field, value)
    if args.out:
        config.out_dir = args.out
    return config


def _pretrain(args: argparse.Namespace) -> None:
    from mix2.pretrain import pretrain, resume_pretraining

    if args.resume:
        given = [flag for flag, *_ in PRETRAIN_OPTIONS if getattr(args, flag[2:].replace("-", "_")) is not None]
        given += [
            f"--{name.replace('_', '-')}"
            for name in ("data", "config", "recipe", "out", "run_dir", "prepare_only")
            if getattr(args, name)
        ]
        if given:
            raise Mix2Error(f"--resume continues a run with its own config.yaml; leave out {', '.join(given)}")
        run_dir = resume_pretraining(args.resume, progress=not args.quiet)
    else:
        config = pretraining_from_args(args)
        run_dir = pretrain(config, run_dir=args.run_dir, progress=not args.quiet, prepare_only=args.prepare_only)
    if args.prepare_only:
        print(f"prepared {run_dir}; pretrain it, in one process or many, with: mix2 pretrain --resume {run_dir}")
        return
    if not is_first_process():  # the other processes of a multi-device run leave the summary to the first
        return
    summary = json.loads((run_dir / "pretrained.json").read_text())
    print(
        f"kept epoch {summary['kept_epoch']} of {summary['epochs']} (best.ckpt): validation loss {summary['val_loss']:.3f}, "
        f"top-1 {summary['val_top1']:.3f}; {summary['recordings']} recordings, {summary['audio_min']:.1f} min of audio, "
        f"{summary['training_s'] / 60:.1f} min of training steps"
    )
    recipe = recipe_for_encoder(RunConfig.from_yaml(run_dir / "config.yaml"))
    recipe = f" --recipe {recipe}" if recipe else ""
    print(f"fine-tune it: mix2 train --data YOUR_DATA{recipe} --init {run_dir / 'checkpoints' / 'best.ckpt'}")
    print(f"run folder: {run_dir}")


def experiment_from_args(args: argparse.Namespace) -> Experiment | None:
    """The experiment the flags describe, or ``None`` where none is given (resume the folder's own)."""
    given = [args.data, args.config, args.recipe, args.presets, args.seeds, args.variants]
    given += [getattr(args, flag[2:].replace("-", "_"), None) for flag, *_ in ALL_OPTIONS]
    if all(value is None for value in given):
        return None
    return Experiment(config_from_args(args), args.presets or list(TABLE_ONE), args.seeds or [0, 1, 2], args.variants)


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _print_summary(metrics: dict) -> None:
    def line(report: dict) -> str:
        groups = ", ".join(f"{group} {_number(value)}" for group, value in report["groups"].items())
        return f"macro F1 {_number(report['macro_f1'])} ({groups})"

    kept = metrics.get("kept")
    if kept:
        why = f"its validation {kept['monitor']} was the best, {kept['value']:.3f}" if kept["monitor"] else "the last epoch"
        print(f"kept epoch {kept['epoch']} of {kept['epochs']} ({metrics['checkpoint']}.ckpt): {why}")
    print(
        f"test {line(metrics)} at threshold {metrics['threshold']}; mAP {_number(metrics['map'])} over {metrics['clips']} clips"
    )
    print(f"test {line(metrics['tuned'])} at per-class thresholds tuned on validation")


COMPARED = (
    ("macro F1 over active classes", lambda m: m["macro_f1_active"]),
    ("rare", lambda m: m["groups"]["rare"]),
    ("tuned macro F1 over active classes", lambda m: m["tuned"]["macro_f1_active"]),
    ("mAP", lambda m: m["map"]),
)
"""What the summary holds the network against the baseline on: name, and how to read it from metrics."""


def _print_baseline_comparison(metrics: dict, baseline: dict) -> None:
    """The baseline's test numbers beside the network's, and where the network reaches it and where it trails it."""
    parts, ahead, behind = [], [], []
    for name, read in COMPARED:
        ours, theirs = read(metrics), read(baseline)
        if ours is None or theirs is None:
            continue
        parts.append(f"{name} {_number(ours)} against {_number(theirs)} ({ours - theirs:+.3f})")
        (behind if ours < theirs else ahead).append(name)
    print(f"baseline ({baseline['model']}) on the same test clips: {'; '.join(parts)}")
    if not behind:
        verdict = "the network beats the baseline on each"
    elif not ahead:
        verdict = f"the network trails the baseline on {', '.join(behind)}"
    else:
        verdict = f"the network beats the baseline on {', '.join(ahead)}, and trails it on {', '.join(behind)}"
    print(f"{verdict} (at threshold {metrics['threshold']} unless tuned)")


def _print_precision_check(check: dict, run_dir: str, checkpoint: str) -> None:
    """The check of ``mix2 quantize``: each precision's metrics and speed, each reduced one's change, the verdict."""
    print(f"int8 network calibrated on {check['calibration_clips']} validation clips: {check['network']}")
    print(f"on the {check['test_clips']} test clips (points; each change against fp32; the network alone on OpenVINO):")
    for precision, values in check["metrics"].items():
        changes = check["differences"].get(precision, {})
        shown = ", ".join(
            f"{name} {value:.1f}" + (f" ({changes[name]:+.2f})" if name in changes else "") for name, value in values.items()
        )
        print(f"  {precision}: {shown}; {check['clips_per_s'][precision]:.0f} clips/s")
    if check["offered"]:
        model = run_dir if checkpoint == "best" else Path(run_dir) / "checkpoints" / f"{checkpoint}.ckpt"
        print(f"{check['verdict']}: offered, with mix2 predict {model} PATHS --precision int8")
    else:
        print(f"{check['verdict']}: not offered; mix2 predict --precision int8 refuses this network")
    print("bf16 needs no network of its own (mix2 predict --precision bf16 --engine openvino); judge it by its line above")


def _print_predict_summary(scores: pd.DataFrame, out: str) -> None:
    audio_h, minutes = scores.attrs["scored_audio_s"] / 3600, scores.attrs["elapsed_s"] / 60
    print(f"{len(scores)} windows of {scores['file'].nunique()} recordings in {out}/scores.csv, detections.csv, raven/")
    if audio_h > 0:
        print(
            f"scored {audio_h:.2f} h of audio in {60 * minutes:.1f} s: {audio_h / max(minutes, 1e-9):.2f} h of audio per minute"
        )
    if scores.attrs["failures"]:
        print(f"skipped {scores.attrs['failures']} unreadable recording(s), listed in {out}/failures.csv")


def _nothing_done(windows: pd.DataFrame, out: str, done: str) -> bool:
    """Whether a job over recordings wrote no window: a one-line error where every recording it listed failed,
    and ``True`` with a line where it listed none (a shard that none of the recordings fell in)."""
    if not windows.empty:
        return False
    if windows.attrs["failures"]:
        raise Mix2Error(
            f"no recording could be {done}; the {windows.attrs['failures']} unreadable recording(s) are listed with "
            f"the reason in {Path(out) / 'failures.csv'}"
        )
    print(f"none of the recordings fell in this shard; {out} records it as finished, for mix2 merge")
    return True


def _print_embed_summary(windows: pd.DataFrame, vectors: np.ndarray, out: str) -> None:
    files = "embeddings.npy, windows.csv" + (", embeddings.parquet" if (Path(out) / "embeddings.parquet").is_file() else "")
    print(
        f"{vectors.shape[0]} windows of {windows['file'].nunique()} recordings, {vectors.shape[1]} numbers each, in {out}/{files}"
    )
    if windows.attrs["failures"]:
        print(f"skipped {windows.attrs['failures']} unreadable recording(s), listed in {out}/failures.csv")


def _refuse_options_with_resume(args: argparse.Namespace) -> None:
    """A resumed run keeps its own settings: any option that would change them is an error."""
    names = ["data", "config", "recipe", "preset", "out", "run_dir", *(flag[2:].replace("-", "_") for flag, *_ in ALL_OPTIONS)]
    given = [f"--{name.replace('_', '-')}" for name in names if getattr(args, name) is not None]
    flags = ("--no-specaugment", "--no-time-shift", "--sync-batchnorm", "--compile", "--prepare-only")
    given += [flag for flag in flags if getattr(args, flag[2:].replace("-", "_"))]
    if given:
        raise Mix2Error(f"--resume continues a run with its own config.yaml; leave out {', '.join(given)}")


def _number_or_text(value: str) -> float | str:
    try:
        return float(value)
    except ValueError:
        return value


def _experiment(args: argparse.Namespace) -> None:
    from mix2.experiment import aggregate_experiment, plan_experiment, run_experiment

    experiment = plan_experiment(args.dir, experiment_from_args(args))
    if args.plan_only:
        print(f"planned {len(experiment.runs())} runs; one command per run in {Path(args.dir) / 'commands.txt'}")
        return
    if args.aggregate_only:
        written = aggregate_experiment(args.dir)
    else:
        written = run_experiment(args.dir, experiment, run_index=args.run_index, progress=not args.quiet)
    for name in ("table1", "paired"):  # the paper's table, and whether its differences hold over test recordings
        if name in written:
            print(written[name].read_text())
    if "table1" in written:
        print(f"results: {written['table1'].parent}")


def _say_what_jobs_do() -> None:
    """Print the jobs' ``mix2`` log (e.g. the run folder, at the start) on this call's stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log = logging.getLogger("mix2")
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:  # "mix2" alone: the verbs, one line each
        parser.print_help()
        return 0
    _say_what_jobs_do()
    try:
        if args.verb in ("train", "baseline", "evaluate"):
            # Imported for the verbs that train or evaluate only: predict, merge and download start
            # without Lightning (a second less, and some 200 MB less memory on every job of an array).
            from mix2.run import baseline, evaluate, resume, train
        if args.verb == "train":
            if args.resume:
                _refuse_options_with_resume(args)
                run_dir = resume(args.resume, progress=not args.quiet)
            else:
                config = config_from_args(args)
                run_dir = train(config, run_dir=args.run_dir, progress=not args.quiet, prepare_only=args.prepare_only)
            if args.prepare_only:
                print(f"prepared {run_dir}; train it, in one process or many, with: mix2 train --resume {run_dir}")
            elif is_first_process():  # the other processes of a multi-GPU run leave the summary to the first
                metrics = json.loads((run_dir / "metrics.json").read_text())
                _print_summary(metrics)
                if not args.no_baseline:
                    _print_baseline_comparison(metrics, baseline(run_dir, progress=False))
                print(f"run folder: {run_dir}")
        elif args.verb == "pretrain":
            _pretrain(args)
        elif args.verb == "baseline":
            _print_summary(baseline(args.run_dir, progress=not args.quiet))
            print(f"written: {Path(args.run_dir) / 'baseline.json'}")
        elif args.verb == "evaluate":
            _print_summary(evaluate(args.run_dir, checkpoint=args.checkpoint, progress=not args.quiet))
        elif args.verb == "quantize":
            from mix2.quantize import quantize

            check = quantize(args.run_dir, checkpoint=args.checkpoint, progress=not args.quiet)
            _print_precision_check(check, args.run_dir, args.checkpoint)
        elif args.verb == "experiment":
            _experiment(args)
        elif args.verb == "predict":
            scores = predict(
                args.checkpoint,
                args.paths,
                args.out,
                hop_s=args.hop_s,
                batch_size=args.batch_size,
                thresholds=_number_or_text(args.thresholds),
                precision=args.precision,
                engine=args.engine,
                exact_windows=args.exact_windows,
                parquet=args.parquet,
                progress=not args.quiet,
                shard=args.shard,
            )
            if not _nothing_done(scores, args.out, "scored"):
                _print_predict_summary(scores, args.out)
        elif args.verb == "embed":
            windows, vectors = embed(
                args.checkpoint,
                args.paths,
                args.out,
                hop_s=args.hop_s,
                batch_size=args.batch_size,
                engine=args.engine,
                exact_windows=args.exact_windows,
                parquet=args.parquet,
                progress=not args.quiet,
                shard=args.shard,
            )
            if not _nothing_done(windows, args.out, "embedded"):
                _print_embed_summary(windows, vectors, args.out)
        elif args.verb == "merge":
            windows = merge_shards(args.folders, args.out, parquet=args.parquet)
            print(
                f"{len(windows)} windows of {windows['file'].nunique()} recordings from {len(args.folders)} shards in {args.out}"
            )
        elif args.verb == "download":
            root = download(args.dataset, args.dir, args.zenodo_api, keep_archive=args.keep_archive, progress=not args.quiet)
            print(f"{args.dataset} is in {root}; train on it with: mix2 train --data {root}")
        elif args.verb == "report":
            from mix2.reporting.html import reportable, write_report

            folders, skipped = reportable(args.dirs)
            for folder in skipped:
                print(f"mix2: skipped {folder}: not an experiment folder or a finished run (no experiment.yaml, no metrics.json)")
            if not folders:
                raise Mix2Error("nothing to report: no experiment folder or finished run among the folders given")
            out = args.out or (folders[0] / "report.html" if len(args.dirs) == 1 else Path("mix2-report.html"))
            print(f"report: {write_report(folders, out)}")
    except TrainingInterrupted as err:  # not an error: the run stopped where asked and can go on
        print(f"\nmix2: {err}", file=sys.stderr)
        return err.exit_status
    except SettingError as err:
        print(f"mix2: error: {setting_problem(err)}", file=sys.stderr)
        return err.exit_status
    except Mix2Error as err:
        print(f"mix2: error: {err}", file=sys.stderr)
        return err.exit_status
    return 0


if __name__ == "__main__":
    sys.exit(main())
