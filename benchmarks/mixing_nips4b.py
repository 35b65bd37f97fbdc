"""Mixing benchmark: each mixer on real NIPS4B recordings, 3 seeds, a table in the paper's form.

Trains on ``../shared/data/nips4b`` (3 s windows every 1 s, a fixed split by recording) with
every method over several training seeds (a method is a mixer; ``+add`` adds the ADD loss), and
prints Frequent / Common / Rare / All macro F1 (and mAP) as mean ± std over seeds. Finished
runs are kept and not retrained, so an interrupted benchmark resumes where it stopped.

    python benchmarks/mixing_nips4b.py                       # about an hour on 2 CPU cores
    python benchmarks/mixing_nips4b.py --epochs 1 --seeds 0  # a smoke run

The defaults are sized to this machine, not to the paper: 4 epochs at batch 16 and lr 1e-3
(the paper's 100 epochs at batch 128 and lr 1e-2 take about a day here).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import pandas as pd

from mix2 import default_config, train

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nips4b"
METHODS = ["none", "mixup", "manifold_mixup", "multimix", "mix2", "none+add", "mix2+add"]
COLUMNS = {"frequent": "Frequent", "common": "Common", "rare": "Rare", "all": "All", "map": "mAP"}


def run_one(data: Path, method: str, seed: int, args: argparse.Namespace, out: Path) -> dict:
    """Train one method with one seed (or reuse a finished run); returns its metrics."""
    run_dir = out / f"{method}-seed{seed}"
    if (run_dir / "metrics.json").is_file():
        return json.loads((run_dir / "metrics.json").read_text())
    config = default_config(str(data))
    mixing, _, extra_loss = method.partition("+")
    config.mixing.method = mixing
    config.loss.name = "bce+add" if extra_loss == "add" else "bce"
    config.train.seed = seed
    config.train.epochs = args.epochs
    config.train.batch_size = args.batch_size
    config.train.lr = args.lr
    started = time.perf_counter()
    train(config, run_dir=run_dir, progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    print(f"{method} seed {seed}: macro F1 {metrics['macro_f1']:.3f} in {time.perf_counter() - started:.0f} s", flush=True)
    return metrics


def summarise(rows: list[dict]) -> pd.DataFrame:
    """Mean ± std over seeds of each method's group F1, in the paper's column order."""
    frame = pd.DataFrame(rows)
    table = {}
    for method, runs in frame.groupby("method", sort=False):
        table[method] = {
            label: f"{100 * runs[key].mean():.1f} ± {100 * runs[key].std(ddof=1 if len(runs) > 1 else 0):.1f}"
            for key, label in COLUMNS.items()
        }
    return pd.DataFrame(table).T


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table with the index as its first column."""
    header = ["method", *table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([str(index), *map(str, row)]) + " |" for index, row in zip(table.index, table.to_numpy())]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--out", type=Path, default=Path("runs/benchmark-mixing-nips4b"))
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the benchmark reads ../shared/data/nips4b)")
        return 0
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    rows = []
    for method in args.methods:
        for seed in args.seeds:
            metrics = run_one(args.data, method, seed, args, args.out)
            rows.append({"method": method, "seed": seed, **metrics["groups"], "all": metrics["macro_f1"], "map": metrics["map"]})
    pd.DataFrame(rows).to_csv(args.out / "runs.csv", index=False)
    table = summarise(rows)
    table.to_csv(args.out / "table.csv")
    print(
        f"\nNIPS4B, macro F1 (%) at threshold 0.5, mean ± std over seeds {args.seeds}; "
        f"{args.epochs} epochs, batch {args.batch_size}, lr {args.lr}"
    )
    print(to_markdown(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
