"""Choosing the kept epoch and the thresholds on out-of-fold predictions instead of on 35 validation recordings.

NIPS4B's validation split (84 windows of 35 recordings, 37 of the 87 classes) is what
``benchmarks/quality.py``'s runs choose their kept epoch on, and what their per-class thresholds
are tuned on; ``benchmarks/thresholds.py`` found those thresholds worse on test than 0.5. This
benchmark trains the same runs with cross-validation instead (``mix2 train --val-folds N
--val-fold K``): every recording outside test validates once, in one of ``--folds`` runs per
method, so the choices are made on all 791 training windows rather than 84. On those
out-of-fold predictions it prints, for no mixing and Mix2 (one training seed, the same test
split and recipe as the quality runs):

1. the epoch curve: validation mAP and macro F1 at 0.5 by epoch, averaged over the folds; the
   epoch where the mean peaks, beside the last one;
2. the kept (``best``) checkpoint against the ``last``, each scored on the pooled out-of-fold
   predictions (macro F1 at 0.5 over the classes with a positive, mAP): which one to keep.
   ``best`` was chosen on the very clips it is scored on here, so it is flattered; where
   ``last`` still matches it, ``last`` is the safer choice;
3. the ways of setting thresholds (``benchmarks/thresholds.py``'s policies), cross-validated
   over the out-of-fold recordings (100 random halvings), which is what a policy may be chosen on;
4. for reading only: the quality runs' test macro F1 (seeds 0, 1, 2 of ``--full``) at 0.5, at
   their own validation-tuned thresholds, and at thresholds tuned on the out-of-fold predictions.

    python benchmarks/crossval.py             # 3 folds x (no mixing, Mix2), 100 epochs: about 100 minutes on 2 cores
    python benchmarks/crossval.py --folds 5   # 5 folds: closer to the full training set, 5/3 the time
    python benchmarks/crossval.py --epochs 40 --init none --full runs/benchmarks/quality-small-data-v1   # v1's 40, from scratch

``--recipe`` must be the one ``--full`` was trained with: ``small-data-v1`` by default, the recipe
of the pretrained network's runs (pretraining uses the paper's 8-ms frames). Its runs go into
``runs/benchmarks/crossval[-<recipe>]-<folds>-folds-<epochs>-epochs[-init-<pretrained>]/fold<k>/``
(the recipe named unless it is ``small-data``),
one ``mix2 experiment`` per fold, so it resumes where it stopped. By default the network is
fine-tuned from ``benchmarks/quality.py --pretrain``'s pretrained network, which must exist;
``--init none`` trains it from scratch.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
from quality import DEFAULT_DATA, METHODS, REFERENCE, check_jobs, configure, recipe_suffix, train_all
from thresholds import POLICIES, cross_validated, macro_f1_active, policy_thresholds

from mix2.config import RECIPES, RunConfig
from mix2.data.clips import ClipTable
from mix2.errors import Mix2Error
from mix2.experiment import Experiment, plan_experiment
from mix2.experiment_plan import read_plan
from mix2.metrics import mean_average_precision
from mix2.run import score_split
from mix2.run_folder import is_finished, read_test_scores

DEFAULT_INIT = Path("runs/benchmarks/pretrain-40x2048/checkpoints/best.ckpt")
DEFAULT_FULL = Path("runs/benchmarks/quality-small-data-v1-100-epochs-init-pretrain-40x2048")
CHECKPOINTS = ("best", "last")


def epoch_curves(run_dirs: list[Path]) -> dict[str, np.ndarray]:
    """``val_map`` and ``val_macro_f1`` by epoch of each fold's run: name -> ``(folds, epochs)``."""
    curves: dict[str, list[list[float]]] = {"val_map": [], "val_macro_f1": []}
    for run_dir in run_dirs:
        with (run_dir / "logs" / "metrics.csv").open() as f:
            rows = [row for row in csv.DictReader(f) if row["val_map"]]
        for name, values in curves.items():
            values.append([float(row[name]) for row in rows])
    return {name: np.array(values) for name, values in curves.items()}


def out_of_fold(run_dirs: list[Path], checkpoint: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each fold's validation clips scored by its run's ``checkpoint``, pooled: labels, scores, recordings."""
    parts = [score_split(run_dir, "val", checkpoint) for run_dir in run_dirs]
    labels = np.concatenate([table.labels for table, _ in parts])
    scores = np.concatenate([scores for _, scores in parts])
    groups = np.concatenate([table.clips["group"].astype(str).to_numpy() for table, _ in parts])
    return labels, scores, groups


def test_scores(run_dir: Path, checkpoint: str) -> tuple[ClipTable, np.ndarray]:
    """A finished quality run's test clips and scores from ``checkpoint`` (``best``: its saved predictions)."""
    return read_test_scores(run_dir) if checkpoint == "best" else score_split(run_dir, "test", checkpoint)


def print_epochs(runs: dict[str, list[Path]]) -> None:
    print("1. Validation by epoch, averaged over the folds (each fold validates on its own recordings)\n")
    print(
        "| method | epoch of the mean's peak | mean val mAP there | at the last epoch | mean of each fold's best (flattered) "
        "| kept epochs | mean val F1 @0.5 at the peak | at the last |"
    )
    print("|---" * 8 + "|")
    for method, run_dirs in runs.items():
        curves = epoch_curves(run_dirs)
        mean_map, mean_f1 = curves["val_map"].mean(axis=0), curves["val_macro_f1"].mean(axis=0)
        peak = int(np.argmax(mean_map))
        kept = ", ".join(str(int(np.argmax(fold)) + 1) for fold in curves["val_map"])
        print(
            f"| {METHODS[method]} | {peak + 1} of {len(mean_map)} | {mean_map[peak]:.3f} | {mean_map[-1]:.3f} "
            f"| {curves['val_map'].max(axis=1).mean():.3f} | {kept} | {mean_f1[peak]:.3f} | {mean_f1[-1]:.3f} |"
        )


def print_out_of_fold(pooled: dict[tuple[str, str], tuple[np.ndarray, np.ndarray, np.ndarray]], halvings: int) -> None:
    clips, recordings = len(next(iter(pooled.values()))[0]), len(np.unique(next(iter(pooled.values()))[2]))
    print(f"\n2. Out-of-fold predictions ({clips} windows of {recordings} recordings): which checkpoint to keep\n")
    print("| method | checkpoint | macro F1 @0.5 (active) | mAP | classes with a positive |")
    print("|---" * 5 + "|")
    for (method, checkpoint), (labels, scores, _) in pooled.items():
        f1 = macro_f1_active(labels, scores, 0.5)
        print(
            f"| {METHODS[method]} | {checkpoint} | {100 * f1:.1f} | {100 * mean_average_precision(labels, scores):.1f} "
            f"| {int((labels.sum(axis=0) > 0).sum())} |"
        )
    print(f"\n3. Ways of setting thresholds, cross-validated over the out-of-fold recordings ({halvings} halvings), macro F1\n")
    print("| method | checkpoint | " + " | ".join(POLICIES) + " |")
    print("|---" * (len(POLICIES) + 2) + "|")
    for (method, checkpoint), (labels, scores, groups) in pooled.items():
        judged = cross_validated(labels, scores, groups, halvings)
        print(f"| {METHODS[method]} | {checkpoint} | " + " | ".join(f"{100 * judged[name]:.1f}" for name in POLICIES) + " |")


def print_test(full_runs: dict[str, list[Path]], pooled: dict) -> None:
    print(
        "\n4. For reading only: the quality runs' test macro F1 (active classes), mean over their seeds, by where the "
        "thresholds come from\n"
    )
    print("| method | checkpoint | 0.5 | per class, own validation | per class, out of fold | one, out of fold | mAP |")
    print("|---" * 7 + "|")
    for method, run_dirs in full_runs.items():
        if not run_dirs:
            print(f"| {METHODS[method]} | (not among --full's runs) |")
            continue
        for checkpoint in CHECKPOINTS:
            labels, scores, _ = pooled[method, checkpoint]
            thresholds = policy_thresholds(labels, scores)
            cells = []
            for run_dir in run_dirs:
                test, test_scores_ = test_scores(run_dir, checkpoint)
                own = json.loads((run_dir / "metrics.json").read_text())["tuned"]["threshold"] if checkpoint == "best" else None
                cells.append(
                    [
                        macro_f1_active(test.labels, test_scores_, 0.5),
                        np.nan if own is None else macro_f1_active(test.labels, test_scores_, np.asarray(own)),
                        macro_f1_active(test.labels, test_scores_, thresholds["per-class"]),
                        macro_f1_active(test.labels, test_scores_, thresholds["one tuned"]),
                        mean_average_precision(test.labels, test_scores_),
                    ]
                )
            means = np.mean(cells, axis=0)
            by_seed = " ".join(f"{100 * c[0]:.1f}" for c in cells)
            print(
                f"| {METHODS[method]} | {checkpoint} | {100 * means[0]:.1f} ({by_seed}) | "
                + " | ".join("" if np.isnan(v) else f"{100 * v:.1f}" for v in means[1:])
                + " |",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an events folder (default: ../shared/data/nips4b)")
    parser.add_argument("--folds", type=int, default=3, help="cross-validation folds over the training recordings (3)")
    parser.add_argument("--epochs", type=int, default=100, help="epochs of every run (100, as --full's)")
    parser.add_argument("--seed", type=int, default=0, help="the training seed of every fold's runs (0)")
    parser.add_argument("--recipe", choices=list(RECIPES), default="small-data-v1", help="--full's recipe (small-data-v1)")
    parser.add_argument(
        "--init", default=str(DEFAULT_INIT), help=f"the pretrained network ({DEFAULT_INIT}), or none: from scratch"
    )
    parser.add_argument("--full", type=Path, default=DEFAULT_FULL, help=f"the quality runs to read on test ({DEFAULT_FULL})")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time, one thread each (2)")
    parser.add_argument("--halvings", type=int, default=100, help="random halvings of the out-of-fold recordings (100)")
    args = parser.parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data}: no such data; this benchmark needs ../shared/data/nips4b beside the repository")
    if args.folds < 2:
        raise SystemExit(f"--folds must be 2 or more, got {args.folds}")
    check_jobs(args.jobs)
    init = None if args.init == "none" else Path(args.init)
    if init is not None and not init.is_file():
        raise SystemExit(f"{init}: no such checkpoint; run benchmarks/quality.py --pretrain first, or give --init")
    full_plan = read_plan(args.full)
    if full_plan is None:
        raise SystemExit(f"{args.full}: not an experiment folder; run benchmarks/quality.py (with these settings) first")
    methods = [REFERENCE, "mix2"]
    config = configure(args.data, args.epochs, None, recipe=args.recipe)
    config.train.init = None if init is None else str(init)
    started_from = "" if init is None else f"-init-{init.parent.parent.name}"
    name = f"crossval{recipe_suffix(args.recipe)}-{args.folds}-folds-{args.epochs}-epochs{started_from}"
    out_dir = Path("runs/benchmarks") / name
    if config.to_dict() != full_plan.base.to_dict():
        raise SystemExit(f"{args.full}: its runs were trained with other settings than these; give --full the matching ones")
    full_runs = {method: [args.full / run.path for run in full_plan.runs() if run.preset == method] for method in methods}
    unfinished = [str(run_dir) for run_dirs in full_runs.values() for run_dir in run_dirs if not is_finished(run_dir)]
    if unfinished:
        raise SystemExit(f"{', '.join(unfinished)}: not finished; run benchmarks/quality.py (with these settings) first")
    fold_dirs = []
    for fold in range(1, args.folds + 1):
        fold_config = RunConfig.from_dict(config.to_dict())
        fold_config.data.val_folds, fold_config.data.val_fold = args.folds, fold
        fold_dir = out_dir / f"fold{fold}"
        experiment = plan_experiment(fold_dir, Experiment(fold_config, methods, [args.seed]))
        train_all(fold_dir, experiment, args.jobs)
        fold_dirs.append(fold_dir)
    runs = {method: [fold_dir / f"runs/{method}/seed{args.seed}" for fold_dir in fold_dirs] for method in methods}
    print_epochs(runs)
    pooled = {(method, checkpoint): out_of_fold(runs[method], checkpoint) for method in methods for checkpoint in CHECKPOINTS}
    print_out_of_fold(pooled, args.halvings)
    print_test(full_runs, pooled)


if __name__ == "__main__":
    try:
        main()
    except Mix2Error as error:
        raise SystemExit(str(error)) from None
