"""Quality on real recordings: the baseline, no mixing, Mix2 and Mix2 + ADD, over seeds, on one split.

On NIPS4B (``../shared/data/nips4b``: real multi-label field recordings, 87 classes), with the
small-data recipe (``--recipe``: another one, such as ``small-data-v3``, the same network for 320 epochs,
``small-data-v2``, the paper's network for 160 epochs, before 2026-12-05, or ``small-data-v1``, before
2026-12-04, in a folder named after it), it trains through ``mix2 experiment`` (so it resumes where it
stopped, and can span sessions):

- ``timeshift``: the recipe without mixing (SpecAugment and the circular time shift);
- ``mix2``: the same with Mix2 (mixup 0.25, manifold mixup 0.5, MultiMix 0.25);
- ``mix2+add``: Mix2 with the ADD loss added to BCE;

each with training seeds 0, 1 and 2 on the split of ``--split-seed`` 0, and fits the log-mel
statistics + logistic regression baseline (``mix2 baseline``) on the same clips. It prints, as
mean ± std over seeds, macro F1 over the classes with a test positive at 0.5 and at the
per-class thresholds tuned on validation, frequent / common / rare macro F1, and mAP; then each
method's difference to no mixing, seed by seed (paired: same seed, same split), beside the
difference in the kept epochs' validation mAP. Settings are chosen on that validation score; the
test split is read only here, for these numbers.

Training runs go ``--jobs`` at a time (default 2), one thread each: on 2 cores one training
process with one thread trains about as fast as with two. They start seed by seed (every method's
seed 0, then seed 1), so a benchmark stopped before its end leaves runs paired by seed.

From a pretrained network (``mix2 pretrain``, issue 20): ``--pretrain`` first pretrains on
``../shared/data/nips4b_unlabelled`` and the audio of ``--data`` (labels unused; resumable, in
``runs/benchmarks/pretrain-<epochs>x<crops>[-<mixing>][-nobg][-hop<hop>]``, with ``--pretrain-mixing`` as its
mixer and ``--pretrain-background`` as its background level),
then fine-tunes every run from it (``--init``); it pretrains on the frames of ``--recipe``
and into its network (``mix2 pretrain --recipe``: 16 ms into the half-width network for ``small-data``, in a
folder named ``...-hop256-mobilenetv3_large_050``; ``--model`` pretrains that network instead);
``--encoder-lr-factor 0`` makes every run a linear probe of the frozen encoder. Where the same
experiment from scratch has finished, each method's difference to it is printed, paired by seed.

    python benchmarks/quality.py                     # NIPS4B, 3 seeds: about 5 hours on 2 CPU cores
    python benchmarks/quality.py --methods mix2 --checkpoint last   # the README's first table: small-data, no mixing and Mix2
    python benchmarks/quality.py --recipe small-data-v3 --checkpoint last   # its next: 320 epochs, with Mix2 + ADD
    python benchmarks/quality.py --recipe small-data-v2 --checkpoint last   # the paper's network, 160 epochs
    python benchmarks/quality.py --recipe small-data-v2 --epochs 80   # the first length of 16-ms frames (80 epochs)
    python benchmarks/quality.py --recipe small-data-v1   # the recipe before 2026-12-04: 40 epochs of 8-ms frames
    python benchmarks/quality.py --quick             # 1 seed, 4 epochs: the whole path in about 5 minutes
    python benchmarks/quality.py --epochs 100 --methods mix2  # the paper's epochs, no mixing and Mix2 only
    python benchmarks/quality.py --json quality.json # also save every figure
    python benchmarks/quality.py --epochs 100 --methods mix2 --recipe small-data-v1 --pretrain --unmixed-final-fraction 0.25  # Mix2's last 25 % clean
    python benchmarks/quality.py --methods mix2 --recipe small-data-v1 --pretrain --pretrain-epochs 10 --pretrain-crops 1024
    python benchmarks/quality.py --methods mix2 --recipe small-data-v1 --pretrain --encoder-lr-factor 0   # a linear probe
    python benchmarks/quality.py --methods timeshift --recipe small-data-v1 --pretrain --pretrain-mixing mix2  # i-Mix in pretraining
    python benchmarks/quality.py --methods timeshift --recipe small-data-v1 --pretrain --pretrain-background 0  # no background mixing
    python benchmarks/quality.py --epochs 100 --methods mix2 --recipe small-data-v1 --pretrain --val-split stratified
    python benchmarks/quality.py --epochs 100 --recipe small-data-v1 --pretrain --checkpoint last   # the same runs, read at their last epoch

``--val-split stratified`` carves validation out by species (``mix2 train``'s option); its folder
is named ``...-val-stratified...``, and each run is also compared, paired by seed, with the same run
on the random validation split where that one has finished. ``--seeds`` trains other seeds than
0, 1 and 2, in a folder named after them.

``--checkpoint last`` reads every finished run at its last epoch instead of its kept one, as
``mix2 train --monitor last`` would have kept it (the monitor does not change training): each run
folder is copied, without its kept checkpoint and results, into ``<folder>-at-last-epoch`` and
scored there with ``mix2 evaluate --checkpoint last`` (thresholds tuned on validation as usual), so
the runs themselves stay as they are.

What each of these commands measured, and what it decided: ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from mix2.cli import setting_problem
from mix2.config import (
    RECIPES,
    VAL_SPLITS,
    FeatureConfig,
    PretrainConfig,
    RunConfig,
    TrainConfig,
    apply_recipe,
    default_config,
)
from mix2.data.clips import ClipTable
from mix2.errors import Mix2Error, SettingError
from mix2.experiment import Experiment, plan_experiment
from mix2.experiment_plan import PLAN_FILE
from mix2.metrics import weighted_macro_scores
from mix2.registry import MIXERS, MODELS
from mix2.reporting.results import PAIRED_RESAMPLES, paired_intervals
from mix2.run import baseline, check_config, evaluate
from mix2.run_folder import is_finished, read_test_scores

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nips4b"
UNLABELLED = DEFAULT_DATA.parent / "nips4b_unlabelled"
ONE_THREAD = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
DEFAULT_BACKGROUND = PretrainConfig().max_background_rms_ratio
METHODS = {"timeshift": "no mixing", "mix2": "Mix2", "mix2+add": "Mix2 + ADD"}
REFERENCE = "timeshift"
COLUMNS = {
    "F1 @0.5": lambda m: m["macro_f1_active"],
    "F1 tuned": lambda m: m["tuned"]["macro_f1_active"],
    "frequent": lambda m: m["tuned"]["groups"]["frequent"],
    "common": lambda m: m["tuned"]["groups"]["common"],
    "rare": lambda m: m["tuned"]["groups"]["rare"],
    "rare @0.5": lambda m: m["groups"]["rare"],
    "mAP": lambda m: m["map"],
}
"""The printed numbers and how each is read from ``metrics.json``; groups are at tuned thresholds unless marked."""


def resampled_columns(metrics: dict, test: ClipTable, scores: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """Each of :data:`COLUMNS` for a finished run, recomputed from its test scores under each row of clip ``weights``
    (``(resamples, test clips)``): ``(resamples,)`` each. With unit weights it reproduces ``metrics.json``'s numbers
    from ``test_predictions.csv``'s scores (exactly since they keep 9 significant digits; to 0.1 points or so in runs
    evaluated before, whose 6 decimals tie saturated scores)."""
    groups = metrics["group_classes"]
    at_half = weighted_macro_scores(test.labels, scores, test.classes, groups, weights, metrics["threshold"])
    tuned = weighted_macro_scores(test.labels, scores, test.classes, groups, weights, np.asarray(metrics["tuned"]["threshold"]))
    return {
        "F1 @0.5": at_half["macro_f1_active"],
        "F1 tuned": tuned["macro_f1_active"],
        **{group: tuned[group] for group in ("frequent", "common", "rare")},
        "rare @0.5": at_half["rare"],
        "mAP": at_half["map"],
    }


def difference_intervals(out_dir: Path, experiment: Experiment) -> dict:
    """The 95 % interval over test recordings of each method's mean paired difference to no mixing, on
    :data:`COLUMNS` (:func:`mix2.reporting.results.paired_intervals`), after checking that the recomputed
    columns are those printed, read from ``metrics.json``."""
    runs = {(run.preset, run.seed): out_dir / run.path for run in experiment.runs()}
    for run_dir in runs.values():
        metrics = json.loads((run_dir / "metrics.json").read_text())
        test, scores = read_test_scores(run_dir)
        unit = resampled_columns(metrics, test, scores, np.ones((1, len(scores))))
        if any(abs(unit[name][0] - read(metrics)) > 0.002 for name, read in COLUMNS.items()):
            raise SystemExit(f"{run_dir}: its test predictions do not reproduce its metrics.json")
    paired = paired_intervals(runs, REFERENCE, resampled_columns)
    if paired is None:
        raise SystemExit(f"{out_dir}: its runs do not share their test clips")
    return paired[1]


def validation_score(metrics: dict) -> float:
    """The kept epoch's validation score (``--monitor``, val_map by default): what settings are chosen on.
    NaN where the last epoch was kept rather than a best one."""
    value = metrics["kept"]["value"]
    return float("nan") if value is None else value


PAIRED = {"validation mAP": validation_score, **COLUMNS}
"""The columns of the paired differences: the test numbers, and first the validation score that settings are chosen on."""


def configure(
    data: Path,
    epochs: int | None,
    model: str | None,
    encoder_lr_factor: float = 1.0,
    unmixed_final_fraction: float = 0.0,
    val_split: str = "random",
    recipe: str = "small-data",
) -> RunConfig:
    """The ``recipe`` (``small-data`` unless told) on ``data`` with the benchmark's settings, checked in one line before any work starts
    (all but ``init``, which may not exist until ``--pretrain`` has made it).

    The recipe keeps the last epoch; the benchmark's runs keep the best validation mAP in ``best.ckpt`` instead, so
    that each run holds both readings (``--checkpoint best`` and ``last``). The monitor does not change training."""
    config = apply_recipe(default_config(str(data)), recipe)
    config.train.monitor = "val_map"
    if epochs is not None:
        config.train.epochs = epochs
    if model is not None:
        config.train.model = model
    config.train.encoder_lr_factor = encoder_lr_factor
    config.mixing.unmixed_final_fraction = unmixed_final_fraction
    config.data.val_split = val_split
    try:
        check_config(config, here=False, starting=False)
    except SettingError as error:
        raise SystemExit(setting_problem(error)) from None
    return config


def recipe_suffix(recipe: str) -> str:
    """What a benchmark folder's name adds for ``recipe``: nothing for ``small-data``, ``-<recipe>`` for another."""
    return "" if recipe == "small-data" else f"-{recipe}"


def pretrained(
    out_root: Path,
    data: Path,
    epochs: int,
    crops: int,
    mixing: str = "none",
    background: float = DEFAULT_BACKGROUND,
    recipe: str = "small-data",
    model: str | None = None,
) -> Path:
    """The folder of ``mix2 pretrain --recipe recipe`` (the recipe's network on its frames; ``model`` instead of
    its network where given) on the unlabelled recordings and ``data``'s audio, pretrained (or resumed) here.

    Its name holds every setting that differs from ``mix2 pretrain``'s defaults: ``pretrain-10x1024``,
    ``pretrain-10x1024-mix2`` (i-Mix), ``pretrain-10x1024-nobg`` (``background`` 0), ``pretrain-10x1024-bg0.25``,
    ``pretrain-40x2048-hop256`` (the 16-ms frames of ``small-data-v2``),
    ``pretrain-40x2048-hop256-mobilenetv3_large_050`` (and the half-width network of ``small-data``).
    """
    hop = RECIPES[recipe]["features"]["hop_length"]
    network = model or RECIPES[recipe]["train"]["model"]
    suffix = "" if mixing == "none" else f"-{mixing}"
    suffix += "" if background == DEFAULT_BACKGROUND else "-nobg" if background == 0 else f"-bg{background:g}"
    suffix += "" if hop == FeatureConfig().hop_length else f"-hop{hop}"
    suffix += "" if network == TrainConfig().model else f"-{network}"
    run_dir = out_root / f"pretrain-{epochs}x{crops}{suffix}"
    if not (run_dir / "pretrained.json").is_file():
        if not UNLABELLED.exists():
            raise SystemExit(f"{UNLABELLED}: no such data; --pretrain needs ../shared/data/nips4b_unlabelled")
        if (run_dir / "recordings.csv").is_file():
            arguments = ["--resume", str(run_dir)]  # a resumed run keeps its own settings
        else:
            arguments = ["--run-dir", str(run_dir), "--data", str(UNLABELLED), str(data), "--epochs", str(epochs)]
            arguments += ["--crops-per-epoch", str(crops), "--mixing", mixing, "--max-background-rms-ratio", str(background)]
            arguments += ["--recipe", recipe, "--model", network]
        print(f"pretraining into {run_dir}", flush=True)
        subprocess.run([sys.executable, "-m", "mix2.cli", "pretrain", *arguments, "--quiet"], env=ONE_THREAD, check=True)
    return run_dir


def check_seeds(seeds: list[int]) -> None:
    """Refuse ``--seeds`` that repeat or fall below 0, in one line, before any work starts."""
    if min(seeds) < 0 or len(set(seeds)) < len(seeds):
        raise SystemExit(f"--seeds must be distinct whole numbers, 0 or more, got {' '.join(map(str, seeds))}")


def check_jobs(jobs: int) -> None:
    """Refuse ``--jobs`` below 1 (no run would ever start), in one line, before any work starts."""
    if jobs < 1:
        raise SystemExit(f"--jobs must be 1 or more, got {jobs}")


def train_all(out_dir: Path, experiment: Experiment, jobs: int) -> dict[str, float]:
    """Train every unfinished run, ``jobs`` processes at a time with one thread each; returns each run's wall seconds."""
    return {str(Path(path).relative_to(out_dir)): s for path, s in train_experiments([(out_dir, experiment)], jobs).items()}


def train_experiments(experiments: list[tuple[Path, Experiment]], jobs: int) -> dict[str, float]:
    """Train every unfinished run of several experiment folders, ``jobs`` processes at a time with one thread each;
    returns each run's wall seconds by its folder. Runs start seed by seed (every method's seed 0, then seed 1), so
    that a session stopped early leaves runs paired by seed, not one method's seeds alone."""
    unfinished = [
        (out_dir, index, run)
        for out_dir, experiment in experiments
        for index, run in enumerate(experiment.runs())
        if not is_finished(out_dir / run.path)
    ]
    pending = sorted(unfinished, key=lambda item: item[2].seed)  # stable: in plan order within a seed
    running: dict[str, tuple[subprocess.Popen, float, Path]] = {}
    seconds: dict[str, float] = {}
    while pending or running:
        while pending and len(running) < jobs:
            out_dir, index, run = pending.pop(0)
            log_path = out_dir / f"run{index}.log"
            command = [sys.executable, "-m", "mix2.cli", "experiment", str(out_dir), "--run-index", str(index), "--quiet"]
            path = str(out_dir / run.path)
            with log_path.open("w") as log:
                process = subprocess.Popen(command, env=ONE_THREAD, stdout=log, stderr=subprocess.STDOUT)
            running[path] = (process, time.perf_counter(), log_path)
            print(f"started {path}", flush=True)
        time.sleep(5)
        for path, (process, started, log_path) in list(running.items()):
            if process.poll() is None:
                continue
            del running[path]
            if process.returncode:
                raise SystemExit(f"{path} failed (exit {process.returncode}); see {log_path}")
            seconds[path] = time.perf_counter() - started
            print(f"finished {path} in {seconds[path] / 60:.1f} min", flush=True)
    return seconds


def at_checkpoint(out_dir: Path, experiment: Experiment, checkpoint: str) -> Path:
    """The folder of ``experiment``'s finished runs scored with ``checkpoint``: ``out_dir`` itself for ``best`` (the
    kept one); for ``last``, ``<out_dir>-at-last-epoch``, where each finished run is copied without its kept checkpoint
    and results and evaluated with ``last.ckpt``, once. The runs in ``out_dir`` are left as they are."""
    if checkpoint == "best":
        return out_dir
    scored_dir = out_dir.with_name(f"{out_dir.name}-at-{checkpoint}-epoch")
    results = ("best.*", "metrics.json", "test_predictions.csv", "baseline.json", "plots")
    for run in experiment.runs():
        source, copy = out_dir / run.path, scored_dir / run.path
        if not is_finished(source) or is_finished(copy):
            continue
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns(*results), dirs_exist_ok=True)
        evaluate(copy, checkpoint, progress=False)
        print(f"scored {copy} with its {checkpoint} checkpoint", flush=True)
    if (out_dir / PLAN_FILE).is_file() and scored_dir.is_dir():  # none is made where no run has finished
        shutil.copy2(out_dir / PLAN_FILE, scored_dir / PLAN_FILE)
    return scored_dir


def mean_std(values: list[float], signed: bool = False) -> str:
    """Mean ± sample std of fractions, in points; ``signed`` marks a difference's mean with its sign."""
    values = np.asarray(values, dtype=float)
    spread = values.std(ddof=1) if len(values) > 1 else 0.0
    return f"{100 * values.mean():{'+' if signed else ''}.1f} ± {100 * spread:.1f}"


def summarise(out_dir: Path, experiment: Experiment) -> dict:
    """Every run's numbers, the baseline's, and the paired differences to no mixing."""
    runs = {(run.preset, run.seed): json.loads((out_dir / run.path / "metrics.json").read_text()) for run in experiment.runs()}
    methods = experiment.presets
    first = out_dir / experiment.runs()[0].path
    reference = baseline(first, progress=False)  # every run shares the split, so one fit serves all
    table = {
        name: {method: [read(runs[method, s]) for s in experiment.seeds] for method in methods} for name, read in COLUMNS.items()
    }
    differences = {
        method: {
            name: [read(runs[method, s]) - read(runs[REFERENCE, s]) for s in experiment.seeds] for name, read in PAIRED.items()
        }
        for method in methods
        if method != REFERENCE
    }
    validation = {method: [validation_score(runs[method, s]) for s in experiment.seeds] for method in methods}
    return {
        "seeds": experiment.seeds,
        "epochs": experiment.base.train.epochs,
        "test_clips": runs[REFERENCE, experiment.seeds[0]]["clips"],
        "methods": table,
        "validation": validation,
        "baseline": {name: read(reference) for name, read in COLUMNS.items()},
        "differences_to_no_mixing": differences,
        "intervals_to_no_mixing": difference_intervals(out_dir, experiment),
    }


def paired_to(out_dir: Path, experiment: Experiment, other_dir: Path) -> dict | None:
    """Each method's difference to the same run in ``other_dir`` (the experiment from scratch), by seed;
    ``None`` where a run there has not finished."""
    runs = experiment.runs()
    if not all(is_finished(other_dir / run.path) for run in runs):
        return None
    ours = {(r.preset, r.seed): json.loads((out_dir / r.path / "metrics.json").read_text()) for r in runs}
    theirs = {(r.preset, r.seed): json.loads((other_dir / r.path / "metrics.json").read_text()) for r in runs}
    return {
        method: {
            name: [read(ours[method, s]) - read(theirs[method, s]) for s in experiment.seeds] for name, read in PAIRED.items()
        }
        for method in experiment.presets
    }


def print_differences(title: str, differences: dict, names: list[str]) -> None:
    print(f"\n{title} (points; each seed, then mean ± std):\n")
    print("| method | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for method, columns in differences.items():
        cells = [" ".join(f"{100 * d:+.1f}" for d in columns[n]) + f" ({mean_std(columns[n], signed=True)})" for n in names]
        print(f"| {METHODS[method]} | " + " | ".join(cells) + " |")


def print_summary(summary: dict) -> None:
    names = list(COLUMNS)
    at_last = summary["checkpoint"] == "last"  # every run read at its last epoch, which no validation score chose
    paired_names = list(COLUMNS) if at_last else list(PAIRED)
    print(f"\nNIPS4B test split ({summary['test_clips']} clips), macro F1 over classes with a test positive and mAP (%),")
    print(
        f"mean ± std over seeds {', '.join(map(str, summary['seeds']))}, {summary['epochs']} epochs; groups at tuned thresholds\n"
    )
    print("| method | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    print(
        "| baseline (log-mel statistics + logistic regression) | "
        + " | ".join(f"{100 * summary['baseline'][n]:.1f}" for n in names)
        + " |"
    )
    for method in summary["methods"][names[0]]:
        print(f"| {METHODS[method]} | " + " | ".join(mean_std(summary["methods"][n][method]) for n in names) + " |")
    print("\nValidation mAP of each kept epoch, by seed: what settings are chosen on (the test numbers are only reported)\n")
    if at_last:
        print("- none: every run is read at its last epoch, which no validation score chose")
    else:
        for method, scores in summary["validation"].items():
            print(f"- {METHODS[method]}: " + ", ".join(f"{score:.3f}" for score in scores) + f" (mean {np.mean(scores):.3f})")
    print_differences("Difference to no mixing, paired by seed", summary["differences_to_no_mixing"], paired_names)
    print(
        f"\n95 % interval of the mean difference to no mixing over the seeds, resampling whole test recordings "
        f"(BCa bootstrap, {PAIRED_RESAMPLES} resamples; the seeds held fixed):\n"
    )
    print("| method | " + " | ".join(names) + " |")
    print("|---" * (len(names) + 1) + "|")
    for method, columns in summary["intervals_to_no_mixing"].items():
        print(
            f"| {METHODS[method]} | "
            + " | ".join(f"{100 * low:+.1f} to {100 * high:+.1f}" for low, high in columns.values())
            + " |"
        )
    if summary.get("differences_to_scratch"):
        print_differences(
            "Difference to the same run from scratch, paired by seed", summary["differences_to_scratch"], paired_names
        )
    if summary.get("differences_to_random_val"):
        print_differences(
            "Difference to the same run with validation drawn at random, paired by seed (the same test clips; "
            "the validation mAPs are of different clips)",
            summary["differences_to_random_val"],
            paired_names,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an events folder (default: ../shared/data/nips4b)")
    parser.add_argument("--out", type=Path, help="the experiment folder (default: runs/benchmarks/quality[-quick])")
    parser.add_argument("--quick", action="store_true", help="one seed, 4 epochs: checks the whole path in minutes")
    parser.add_argument("--recipe", choices=list(RECIPES), default="small-data", help="the runs' recipe (small-data)")
    parser.add_argument(
        "--epochs",
        type=int,
        help=f"epochs of every run (the recipe's: small-data {RECIPES['small-data']['train']['epochs']}; the paper's {RECIPES['paper']['train']['epochs']})",
    )
    parser.add_argument("--model", choices=MODELS.names(), help="the network (the small-data recipe's)")
    parser.add_argument(
        "--methods", nargs="+", choices=list(METHODS), default=list(METHODS), help="which to train (all; timeshift always)"
    )
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time, one thread each (2)")
    parser.add_argument("--init", type=Path, help="fine-tune every run from this checkpoint (mix2 train --init)")
    parser.add_argument(
        "--pretrain", action="store_true", help="pretrain on nips4b_unlabelled and --data's audio first, then --init from it"
    )
    parser.add_argument("--pretrain-epochs", type=int, default=40, help="with --pretrain: its epochs (40)")
    parser.add_argument("--pretrain-crops", type=int, default=2048, help="with --pretrain: its crops per epoch (2048)")
    parser.add_argument(
        "--pretrain-mixing", choices=MIXERS.names(), default="none", help="with --pretrain: its mixer, i-Mix (none)"
    )
    parser.add_argument(
        "--pretrain-background",
        type=float,
        default=DEFAULT_BACKGROUND,
        help=f"with --pretrain: its --max-background-rms-ratio ({DEFAULT_BACKGROUND:g}; 0: no background mixing)",
    )
    parser.add_argument(
        "--encoder-lr-factor",
        type=float,
        default=1.0,
        help="with --init or --pretrain: 0 freezes the encoder, a linear probe (1)",
    )
    parser.add_argument(
        "--unmixed-final-fraction",
        type=float,
        default=0.0,
        help="the mixed runs train their last fraction of epochs without mixing (mix2 train's option; 0)",
    )
    parser.add_argument(
        "--val-split",
        choices=VAL_SPLITS,
        default="random",
        help="validation carved out of train at random or stratified by class (mix2 train's option; random)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (0 1 2; --quick: 0)")
    parser.add_argument(
        "--checkpoint",
        choices=("best", "last"),
        default="best",
        help="read each run at its kept epoch (best) or at its last, scored in a copy of the folder (best)",
    )
    parser.add_argument("--json", type=Path, help="save every figure here")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data}: no such data; the quality benchmark needs ../shared/data/nips4b beside the repository")
    check_seeds(args.seeds)
    check_jobs(args.jobs)
    if args.pretrain_background < 0:
        raise SystemExit(f"--pretrain-background must be 0 or more, got {args.pretrain_background:g}")
    epochs = 4 if args.quick else args.epochs
    methods = [REFERENCE] + [method for method in METHODS if method in args.methods and method != REFERENCE]
    name = "quality" + recipe_suffix(args.recipe)
    name += "-quick" if args.quick else (f"-{epochs}-epochs" if epochs else "")
    name += f"-{args.model}" if args.model else ""
    name += f"-unmixed-final-{args.unmixed_final_fraction:g}" if args.unmixed_final_fraction else ""
    name += "" if methods == list(METHODS) else "".join(f"-{m}" for m in methods[1:])
    seeds = [0] if args.quick else args.seeds
    variant = f"-val-{args.val_split}" if args.val_split != "random" else ""
    variant += "" if seeds == [0, 1, 2] or args.quick else "-seeds-" + "-".join(map(str, seeds))
    scratch_dir = Path("runs/benchmarks") / (name + variant)
    config = configure(
        args.data, epochs, args.model, args.encoder_lr_factor, args.unmixed_final_fraction, args.val_split, args.recipe
    )
    init = args.init
    if args.pretrain:
        pretrain_dir = pretrained(
            Path("runs/benchmarks"),
            args.data,
            args.pretrain_epochs,
            args.pretrain_crops,
            args.pretrain_mixing,
            args.pretrain_background,
            args.recipe,
            args.model,
        )
        init = pretrain_dir / "checkpoints" / "best.ckpt"
    start = "" if init is None else f"-init-{init.parent.parent.name if init.parent.name == 'checkpoints' else init.stem}"
    start += {1.0: "", 0.0: "-probe"}.get(args.encoder_lr_factor, f"-encoder-lr-{args.encoder_lr_factor:g}") if init else ""
    out_dir = args.out or scratch_dir.with_name(scratch_dir.name + start)
    random_val_dir = scratch_dir.with_name(name + start)  # the same runs with validation drawn at random
    config.train.init = None if init is None else str(init)
    experiment = plan_experiment(out_dir, Experiment(config, methods, seeds))
    seconds = train_all(out_dir, experiment, args.jobs)
    scored_dir = at_checkpoint(out_dir, experiment, args.checkpoint)
    summary = summarise(scored_dir, experiment)
    summary["wall_s_this_session"] = seconds
    summary["checkpoint"] = args.checkpoint
    if init is not None:
        summary["init"] = str(init)
        scratch_scored = at_checkpoint(scratch_dir, experiment, args.checkpoint)
        summary["differences_to_scratch"] = paired_to(scored_dir, experiment, scratch_scored)
        if args.pretrain:
            summary["pretraining"] = json.loads((pretrain_dir / "pretrained.json").read_text())
    if args.val_split != "random":
        random_val_scored = at_checkpoint(random_val_dir, experiment, args.checkpoint)
        summary["differences_to_random_val"] = paired_to(scored_dir, experiment, random_val_scored)
    print_summary(summary)
    if "pretraining" in summary:
        facts = summary["pretraining"]
        print(
            f"\npretrained on {facts['recordings']} recordings ({facts['audio_min']:.1f} min) for {facts['epochs']} epochs: "
            f"{facts['training_s'] / 60:.1f} min of training steps, one thread; kept epoch {facts['kept_epoch']}, "
            f"validation top-1 {facts['val_top1']:.3f}"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    try:
        main()
    except Mix2Error as error:  # a folder that holds another experiment, an --init that is not a checkpoint
        raise SystemExit(str(error)) from None
