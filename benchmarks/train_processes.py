"""One training run over N one-thread processes against one process with every thread, in one run.

Whether one run's epochs go faster as data-parallel processes of one thread each
(``OMP_NUM_THREADS=1 mix2 train --devices N --accelerator cpu --strategy ddp``; see "Training on
a cluster" in the README) than as one process with a thread per core: MobileNetV3-Large's small
convolutions leave a second thread of one process partly idle. This times real NIPS4B epochs
(``../shared/data/nips4b``, the ``small-data`` recipe without mixing) both ways, each a ``mix2
train`` command of its own, and prints the speed-up of the last (steady) epoch and of the whole
command. The feature cache is filled first (``--prepare-only``), untimed: epochs read it the same
way in both.

    python benchmarks/train_processes.py                  # 2 epochs each, N = the CPU's cores
    python benchmarks/train_processes.py --processes 4 --epochs 3
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "nips4b"


def train_command(data: Path, run_dir: Path, epochs: int, processes: int) -> list[str]:
    """``mix2 train`` on ``data`` for ``epochs`` epochs, over ``processes`` DDP processes on the CPU where above 1."""
    command = [sys.executable, "-m", "mix2.cli", "train", "--data", str(data), "--recipe", "small-data"]
    command += ["--preset", "timeshift", "--epochs", str(epochs), "--no-baseline", "--run-dir", str(run_dir), "--quiet"]
    if processes > 1:
        command += ["--devices", str(processes), "--accelerator", "cpu", "--strategy", "ddp"]
    return command


def timed_run(data: Path, run_dir: Path, epochs: int, processes: int) -> dict:
    """Run one training command; its steady epoch's clips per second and its whole wall time."""
    env = dict(os.environ)
    if processes > 1:
        env["OMP_NUM_THREADS"] = "1"
    else:
        env.pop("OMP_NUM_THREADS", None)  # PyTorch's default: a thread per core
    started = time.perf_counter()
    subprocess.run(train_command(data, run_dir, epochs, processes), env=env, check=True, stdout=subprocess.DEVNULL)
    wall_s = time.perf_counter() - started
    speed = pd.read_csv(run_dir / "logs" / "speed.csv").iloc[-1]
    return {"clips_per_s": float(speed["clips_per_s"]), "epoch_s": float(speed["seconds"]), "wall_s": wall_s}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="the recordings to train on (../shared/data/nips4b)")
    parser.add_argument("--processes", type=int, default=os.cpu_count(), help="one-thread processes of the DDP run (the cores)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each run; the last one is timed (2)")
    args = parser.parse_args(argv)
    if not args.data.is_dir():
        print(f"skipped: {args.data} is absent (the benchmark trains on ../shared/data/nips4b)")
        return 0
    if args.processes < 2 or args.epochs < 2:
        parser.error("--processes and --epochs must each be at least 2")
    with tempfile.TemporaryDirectory() as tmp:
        warm_up = train_command(args.data, Path(tmp) / "warm-up", 1, 1) + ["--prepare-only"]
        subprocess.run(warm_up, check=True, stdout=subprocess.DEVNULL)  # fills the feature cache, untimed
        one = timed_run(args.data, Path(tmp) / "one", args.epochs, 1)
        many = timed_run(args.data, Path(tmp) / "many", args.epochs, args.processes)
    print(f"{args.data.name}, small-data recipe, {args.epochs} epochs; {os.cpu_count()} cores")
    print("| run | clips/s (last epoch) | epoch (s) | whole command (s) |\n|---|---|---|---|")
    print(f"| one process, a thread per core | {one['clips_per_s']:.1f} | {one['epoch_s']:.1f} | {one['wall_s']:.0f} |")
    print(
        f"| {args.processes} processes of one thread (DDP) | {many['clips_per_s']:.1f} | {many['epoch_s']:.1f} | {many['wall_s']:.0f} |"
    )
    print(
        f"speed-up: {many['clips_per_s'] / one['clips_per_s']:.2f}x per epoch, "
        f"{one['wall_s'] / many['wall_s']:.2f}x for the whole command"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
