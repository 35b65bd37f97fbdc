"""The demonstration on other draws of the chorus: the network against the baseline, where neither was tuned.

``mix2 train`` with no arguments trains on the built-in chorus drawn with ``chorus_seed`` 0, and
prints its test numbers beside the baseline's. One draw, scored once, cannot tell a setting from
luck, and the demonstration's test clips must not choose its settings. This benchmark trains the
same demonstration (``default_config("chorus")``: the small-data recipe with Mix2, for 120 epochs)
on other draws of the same generator, ``--worlds`` (chorus seeds 1 to 6; 0, the demonstration's
own, is refused), with training seeds ``--seeds`` (0) and the demonstration's preset or
``--presets``, through ``mix2 experiment`` (one folder per world, preset and seed, so it resumes
where it stopped and a later call reuses what has finished), and fits the baseline on each
world's clips. It prints, per world and seed and as mean ± std over
them, what the demonstration's summary holds the network against the baseline on (macro F1 over
active classes and rare F1 at 0.5, tuned macro F1, mAP), each network's difference to the
baseline, and, with several ``--presets``, each preset's difference to the first, paired by
world and seed; each difference with the number of runs where it is above zero.

Runs go ``--jobs`` at a time (default 2), one thread each: about 8 minutes a run on 2 cores. Each
network and length has its folder, ``runs/benchmarks/chorus-worlds-MODEL-eEPOCHS``.

    python benchmarks/chorus_worlds.py                                  # the demonstration on worlds 1 to 6: about 25 minutes
    python benchmarks/chorus_worlds.py --presets timeshift mix2         # Mix2 against no mixing, paired by world
    python benchmarks/chorus_worlds.py --seeds 0 1                      # two training seeds on each world
    python benchmarks/chorus_worlds.py --model mobilenetv3_large --epochs 48 --presets timeshift mix2 --seeds 0 1   # before half width
    python benchmarks/chorus_worlds.py --model mobilenetv3_large_bandnorm --epochs 48 --worlds 1 2 3

What it measured, and what that decided: ``benchmarks/RESULTS.md``, "The demonstration on the built-in chorus".
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from quality import check_jobs, check_seeds, mean_std, train_experiments

from mix2.cli import COMPARED
from mix2.config import DEMO_PRESET, PRESETS, RunConfig, default_config
from mix2.errors import Mix2Error
from mix2.experiment import Experiment, plan_experiment
from mix2.registry import MODELS
from mix2.run import baseline

DEMO = default_config("chorus")
"""The demonstration's configuration (``mix2 train`` with no arguments)."""
DEMO_WORLD = DEMO.data.chorus_seed
"""The chorus seed of the demonstration itself: its test clips are read by ``mix2 train``, never by this benchmark."""


def world_config(world: int, model: str | None, epochs: int | None = None) -> RunConfig:
    """The demonstration's configuration on the chorus drawn with seed ``world``, with another network or length where given."""
    config = default_config("chorus")
    config.data.chorus_seed = world
    if model is not None:
        config.train.model = model
    if epochs is not None:
        config.train.epochs = epochs
    return config


def summarise(runs: dict[tuple[int, int], dict[str, Path]]) -> dict[tuple[int, int], dict[str, dict[str, float | None]]]:
    """Per (world, training seed), the baseline's numbers (one fit per world: the seed leaves the split alone) and each
    preset's run's, by the names of :data:`COMPARED`."""
    fitted: dict[int, dict] = {}
    rows = {}
    for (world, seed), folders in runs.items():
        if world not in fitted:
            fitted[world] = baseline(next(iter(folders.values())), progress=False)
        metrics = {preset: json.loads((folder / "metrics.json").read_text()) for preset, folder in folders.items()}
        rows[world, seed] = {
            method: {name: read(m) for name, read in COMPARED} for method, m in {"baseline": fitted[world], **metrics}.items()
        }
    return rows


def print_summary(rows: dict[tuple[int, int], dict], presets: list[str]) -> None:
    """The table per world and seed, then mean ± std over them of each row and of the paired differences."""
    names = [name for name, _ in COMPARED]
    print(f"\n| world | seed | method | {' | '.join(names)} |")
    print("|---|---|---|" + "---|" * len(names))
    for (world, seed), row in rows.items():
        for method in ["baseline", *presets]:
            cells = " | ".join("-" if row[method][n] is None else f"{row[method][n]:.3f}" for n in names)
            print(f"| {world} | {seed} | {method} | {cells} |")

    def column(method: str, name: str, minus: str | None = None) -> list[float]:
        pairs = [(row[method][name], row[minus][name] if minus else 0.0) for row in rows.values()]
        return [a - b for a, b in pairs if a is not None and b is not None]

    print(f"\nover {len(rows)} runs of each method ({len({w for w, _ in rows})} worlds; points, mean ± std):")
    print(f"| method | {' | '.join(names)} |")
    print("|---|" + "---|" * len(names))
    for method in ["baseline", *presets]:
        print(f"| {method} | {' | '.join(mean_std(column(method, n)) for n in names)} |")
    pairs = [(method, "baseline") for method in presets] + [(method, presets[0]) for method in presets[1:]]
    for method, minus in pairs:
        differences = [column(method, n, minus) for n in names]
        cells = [f"{mean_std(d, signed=True)} (ahead on {sum(x > 0 for x in d)}/{len(d)})" for d in differences]
        print(f"| {method} − {minus} | {' | '.join(cells)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worlds", type=int, nargs="+", default=[1, 2, 3, 4, 5, 6], help="chorus seeds (1 to 6)")
    parser.add_argument(
        "--presets",
        nargs="+",
        choices=list(PRESETS),
        default=[DEMO_PRESET],
        help=f"the demonstration's ({DEMO_PRESET}), or others",
    )
    parser.add_argument("--model", choices=MODELS.names(), help=f"the network (the demonstration's, {DEMO.train.model})")
    parser.add_argument("--epochs", type=int, help=f"training epochs (the demonstration's {DEMO.train.epochs})")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds, each on every world (0)")
    parser.add_argument("--jobs", type=int, default=2, help="training runs at a time, one thread each (2)")
    parser.add_argument(
        "--out",
        type=Path,
        help="the folder of the worlds' experiments (default: runs/benchmarks/chorus-worlds-MODEL-eEPOCHS)",
    )
    parser.add_argument("--json", type=Path, help="save every figure here")
    args = parser.parse_args()
    if DEMO_WORLD in args.worlds:
        raise SystemExit(f"--worlds: {DEMO_WORLD} is the demonstration's own chorus, whose test clips choose nothing; use others")
    if min(args.worlds) < 0 or len(set(args.worlds)) < len(args.worlds):
        raise SystemExit(f"--worlds must be distinct whole numbers above 0, got {' '.join(map(str, args.worlds))}")
    check_seeds(args.seeds)
    if args.epochs is not None and args.epochs < 1:
        raise SystemExit(f"--epochs must be 1 or more, got {args.epochs}")
    check_jobs(args.jobs)
    if len(set(args.presets)) < len(args.presets):
        raise SystemExit(f"--presets must be distinct, got {' '.join(args.presets)}")
    model, epochs = args.model or DEMO.train.model, args.epochs or DEMO.train.epochs
    root = args.out or Path("runs/benchmarks") / f"chorus-worlds-{model}-e{epochs}"
    # one experiment folder per world, preset and seed, so that a later call with more of any reuses the runs
    keys = [(world, preset, seed) for world in args.worlds for seed in args.seeds for preset in args.presets]
    folders = {(world, preset, seed): root / f"world{world}" / preset / f"seed{seed}" for world, preset, seed in keys}
    experiments = {
        key: plan_experiment(folders[key], Experiment(world_config(key[0], model, epochs), [key[1]], [key[2]])) for key in keys
    }
    train_experiments([(folders[key], experiments[key]) for key in keys], args.jobs)
    runs = {
        (world, seed): {
            preset: folders[world, preset, seed] / experiments[world, preset, seed].runs()[0].path for preset in args.presets
        }
        for world in args.worlds
        for seed in args.seeds
    }
    rows = summarise(runs)
    print_summary(rows, args.presets)
    if args.json:
        figures = {f"world{world}-seed{seed}": row for (world, seed), row in rows.items()}
        summary = {"presets": args.presets, "model": model, "epochs": epochs, "runs": figures}
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    try:
        main()
    except Mix2Error as error:  # a folder that holds another plan
        raise SystemExit(str(error)) from None
