"""Training and inference speed against the default path, measured in one run on this machine.

Every figure is a ratio against a baseline timed in the same run, because a shared machine's
speed drifts. Each configuration runs in a fresh process (so its peak memory is its own), and
the configurations take turns over ``--rounds`` rounds; the best step of each is kept.

- **Training step**: the whole step of ``mix2 train`` with Mix2 mixing (SpecAugment, time
  shift, the mixer, BCE, backward, AdamW), MobileNetV3-Large at 1 x 128 x 376. The baseline is
  PyTorch's default: the default memory layout in fp32, and the C heap as the process starts.
  mix2's path is channels-last, with freed memory kept for the next step
  (:func:`mix2.heap.keep_freed_heap_memory`, as ``mix2 train`` does); bf16 autocast and
  micro-batches are the options, on mix2's path.
- **Inference**: the model on a batch of cached features. The baseline is PyTorch's default
  layout in fp32; then channels-last, batch norm folded into the convolutions, in PyTorch and in
  every inference engine installed (ONNX Runtime, OpenVINO; see :mod:`mix2.engines`), bf16
  under PyTorch's autocast and OpenVINO's bf16 hint, and OpenVINO int8 (NNCF, calibrated on the
  timed batch: speed only; ``mix2 quantize`` checks a real run's accuracy).
  mix2's path (``mix2:``) is the engine ``--engine auto`` takes here.
- **Front-end**: decode, resample and log-mel of real recordings (``../shared/data/frogs``),
  written to a feature cache, as ``mix2 train`` does once per clip.
- **Cache read**: clips per second read back from that cache through the training loader.
- **Compiled training**: two real epochs of NIPS4B's size (704 clips) with ``--compile``
  (``torch.compile``) and without: a compiled epoch's speed-up, and after how many epochs it pays
  back the compilation (skipped in ``--quick``: compiling takes minutes at any size).
- **Epochs**: real one-epoch ``mix2`` training runs at three sizes: how epoch time grows with
  the number of clips, the share of time spent waiting for data, and a check that no feature is
  computed during training.

    python benchmarks/speed.py                       # about 12 minutes on 2 CPU cores
    python benchmarks/speed.py --json speed.json     # also save every figure
    python benchmarks/speed.py --quick               # every code path at toy sizes, in about two minutes
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import platform
import resource
import sys
import tempfile
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mix2 import default_config
from mix2.data.audio import duration_s
from mix2.data.clips import ClipTable
from mix2.engines import OpenVinoEngine, exported_onnx, installed, load_engine, resolve_engine
from mix2.features.cache import FeatureCache, extract_features
from mix2.features.logmel import LogMel
from mix2.heap import keep_freed_heap_memory
from mix2.inference import InferenceModel, TrainedModel, load_trained_model
from mix2.quantize import write_int8_network
from mix2.registry import ENGINES
from mix2.run import _fit
from mix2.training import Classifier, EpochShuffle, clip_loader

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "frogs"
CLASSES = [f"species_{i}" for i in range(42)]
TARGETS = {"training": 1.6, "inference": 3.5, "data_wait_fraction": 0.05, "compiled_training": 1.3}


@dataclass(frozen=True)
class Setup:
    """One configuration of the training step or of inference: memory layout, precision, batch."""

    name: str
    channels_last: bool
    precision: str = "fp32"
    batch_size: int = 32
    micro_batch_size: int | None = None
    fold: bool = False
    engine: str = "torch"
    keep_freed_memory: bool = False

    def module(self) -> Classifier:
        config = default_config("data")
        config.mixing.method = "mix2"
        config.train.channels_last = self.channels_last
        config.train.batch_size = self.batch_size
        config.train.micro_batch_size = self.micro_batch_size
        return Classifier(config.to_dict(), CLASSES)


def training_setups(batch: int, micro: int) -> list[Setup]:
    kept = {"keep_freed_memory": True}
    return [
        Setup("default layout, fp32 (baseline)", channels_last=False, batch_size=batch),
        Setup("channels-last, fp32", channels_last=True, batch_size=batch),
        Setup("mix2: channels-last, fp32, freed memory kept", channels_last=True, batch_size=batch, **kept),
        Setup("channels-last, bf16 autocast", channels_last=True, precision="bf16", batch_size=batch, **kept),
        Setup("default layout, bf16 autocast", channels_last=False, precision="bf16", batch_size=batch, **kept),
        Setup(f"channels-last, batch {4 * batch} at once", channels_last=True, batch_size=4 * batch, **kept),
        Setup(
            f"channels-last, batch {4 * batch} in micro-batches of {micro}",
            True,
            batch_size=4 * batch,
            micro_batch_size=micro,
            **kept,
        ),
    ]


def inference_setups(batch: int) -> list[Setup]:
    """PyTorch's paths, then every exported engine installed; ``mix2:`` marks the engine ``auto`` takes here."""
    default = resolve_engine("auto", torch.device("cpu"))
    folded = [("torch", "PyTorch, channels-last, batch norm folded, fp32")]
    folded += [(name, f"{name}, batch norm folded, fp32") for name in ENGINES.names() if name != "torch" and installed(name)]
    return [
        Setup("PyTorch, default layout, fp32 (baseline)", channels_last=False, batch_size=batch),
        Setup("PyTorch, channels-last, fp32", channels_last=True, batch_size=batch),
        *[
            Setup(f"{'mix2: ' if name == default else ''}{label}", True, batch_size=batch, fold=True, engine=name)
            for name, label in folded
        ],
        Setup("PyTorch, channels-last, bf16 autocast", channels_last=True, precision="bf16", batch_size=batch),
        *[
            Setup(f"openvino, {label}", True, precision=precision, batch_size=batch, fold=True, engine="openvino")
            for precision, label in (("bf16", "bf16 hint"), ("int8", "int8 (NNCF), the rest OpenVINO's choice"))
            if installed("openvino") and importlib.util.find_spec("nncf")
        ],
    ]


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2  # Linux reports KiB


def time_training(setup: Setup, steps: int, frames: int) -> tuple[float, float]:
    """Best seconds of one training step of ``setup`` (after a warm-up step), and the process's peak memory in GB."""
    if setup.keep_freed_memory:
        keep_freed_heap_memory()
    torch.manual_seed(0)
    module = setup.module().train()
    optimizer = torch.optim.AdamW(module.parameters(), lr=1e-3)
    x = torch.rand(setup.batch_size, 1, 128, frames)
    targets = (torch.rand(setup.batch_size, len(CLASSES)) < 0.1).float()

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=setup.precision == "bf16"):
            loss = module.training_step((x, targets), 0)  # the step mix2 train runs, as Lightning would call it
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*self.log\(\)")  # no Trainer here to log to
        return _best_of(step, steps), _peak_rss_gb()


def time_inference(setup: Setup, steps: int, frames: int) -> tuple[float, float]:
    """Best seconds of one inference call of ``setup`` on a batch, and the process's peak memory in GB."""
    torch.manual_seed(0)
    module = setup.module().eval()
    trained = TrainedModel(module.model, module.classes, module.config, thresholds=None)
    model = InferenceModel(trained, fold=setup.fold) if setup.channels_last else module.model
    x = torch.rand(setup.batch_size, 1, 128, frames)
    with tempfile.TemporaryDirectory() as folder:
        if setup.engine != "torch":  # exported from a checkpoint, as mix2 predict does
            checkpoint = Path(folder) / "model.ckpt"
            torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, checkpoint)
            trained = load_trained_model(checkpoint)
            trained.config.data.window_s = (
                (frames - 1) * trained.config.features.hop_length / trained.config.features.sample_rate_hz
            )
            if setup.precision == "int8":  # for speed only: calibrated on the timed batch, never checked nor offered
                network_file = Path(folder) / "model.int8.xml"
                write_int8_network(exported_onnx(trained, checkpoint), [x], network_file, progress=False)
                model = OpenVinoEngine(network_file, hint=None)
            else:
                model = load_engine(trained, checkpoint, setup.engine, precision=setup.precision)

        def call() -> None:
            autocast = setup.precision == "bf16" and setup.engine == "torch"
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                model(x)

        return _best_of(call, steps), _peak_rss_gb()


def _best_of(run, repeats: int) -> float:
    run()  # warm-up: first-call allocations and kernel choices
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def compare(timer, setups: list[Setup], rounds: int, steps: int, frames: int) -> list[dict]:
    """Each setup timed in a fresh process per round, the setups taking turns; rows with clips/s and speed-up over the first."""
    best = {setup: (float("inf"), 0.0) for setup in setups}
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for _ in range(rounds):
            for setup in setups:
                seconds, peak = pool.submit(timer, setup, steps, frames).result()
                best[setup] = (min(best[setup][0], seconds), max(best[setup][1], peak))
    baseline = setups[0].batch_size / best[setups[0]][0]
    rows = []
    for setup, (seconds, peak) in best.items():
        clips_per_s = setup.batch_size / seconds
        rows.append(
            {
                **asdict(setup),
                "clips_per_s": round(clips_per_s, 2),
                "speedup": round(clips_per_s / baseline, 2),
                "peak_rss_gb": round(peak, 2),
            }
        )
    return rows


def frontend_and_cache(recordings: list[Path], cache_dir: Path, batch: int) -> tuple[dict, dict]:
    """Clips/s of decode + resample + log-mel into the cache, then of reading the cache through the training loader."""
    starts = [(p, float(s)) for p in recordings for s in np.arange(0, max(duration_s(p) - 3.0, 0) + 1e-9, 3.0)]
    clips = pd.DataFrame({"file": [str(p) for p, _ in starts], "start_s": [s for _, s in starts]})
    clips["end_s"], clips["group"], clips["split"] = clips["start_s"] + 3.0, clips["file"], "train"
    table = ClipTable(clips=clips, labels=np.zeros((len(clips), 1), dtype=np.uint8), classes=["any"], root="/")
    config = default_config("data")
    started = time.perf_counter()
    paths, _ = extract_features(table, FeatureCache(cache_dir, config.features), 3.0, progress=False)
    frontend_s = time.perf_counter() - started
    readable = [p for p in paths if p is not None]
    config.train.batch_size = batch
    sampler = EpochShuffle(len(readable), config.train.seed)
    loader = clip_loader(readable, np.zeros((len(readable), 1)), config.train, batch, sampler, len(readable) > batch)
    started = time.perf_counter()
    read = sum(len(x) for x, _ in loader)
    cache_s = time.perf_counter() - started
    frontend = {
        "recordings": len(recordings),
        "clips": len(readable),
        "seconds": round(frontend_s, 3),
        "clips_per_s": round(len(readable) / frontend_s, 1),
    }
    return frontend, {"clips": read, "seconds": round(cache_s, 3), "clips_per_s": round(read / cache_s, 1)}


def _synthetic_run(size: int, batch: int, frames: int, folder: Path, rng: np.random.Generator) -> tuple[ClipTable, list[Path]]:
    """``size`` training clips and one validation batch of random features, cached as ``mix2 train`` caches them."""
    count = size + batch
    paths = []
    for i in range(count):
        paths.append(folder / f"{size}-{i}.npy")
        np.save(paths[-1], (rng.random((128, frames)) * 80 - 60).astype(np.float16))
    clips = pd.DataFrame({"file": [p.name for p in paths], "start_s": 0.0, "end_s": 3.0})
    clips["group"], clips["split"] = clips["file"], ["train"] * size + ["val"] * batch
    labels = (rng.random((count, len(CLASSES))) < 0.1).astype(np.uint8)
    return ClipTable(clips=clips, labels=labels, classes=CLASSES, root=folder), paths


def _train_epochs(
    table: ClipTable, paths: list[Path], run_dir: Path, epochs: int, batch: int, compiled: bool = False
) -> pd.DataFrame:
    """``epochs`` real ``mix2`` training epochs (Mix2 mixing, batch ``batch``); their rows of ``logs/speed.csv``, and the whole wall time."""
    config = default_config("data")
    config.mixing.method, config.train.epochs, config.train.batch_size, config.train.compile = "mix2", epochs, batch, compiled
    started = time.perf_counter()
    _fit(config, table, paths, run_dir, progress=False)
    speed = pd.read_csv(run_dir / "logs" / "speed.csv")
    speed.attrs["wall_s"] = time.perf_counter() - started
    return speed


def epochs(sizes: list[int], batch: int, frames: int, folder: Path) -> dict:
    """One real ``mix2`` training epoch at each size (Mix2 mixing, batch ``batch``): epoch time, data wait, front-end calls."""
    rng = np.random.default_rng(0)
    calls = []
    forward = LogMel.forward
    LogMel.forward = lambda self, waveform: calls.append(len(waveform)) or forward(self, waveform)
    rows = []
    try:
        for size in sizes:
            table, paths = _synthetic_run(size, batch, frames, folder, rng)
            speed = _train_epochs(table, paths, folder / f"run-{size}", 1, batch).iloc[0]
            rows.append(
                {
                    "clips": int(speed["clips"]),
                    "seconds": float(speed["seconds"]),
                    "clips_per_s": float(speed["clips_per_s"]),
                    "data_wait_fraction": float(speed["data_wait_fraction"]),
                }
            )
    finally:
        LogMel.forward = forward
    for row in rows:
        row["seconds_per_clip_vs_smallest"] = round((row["seconds"] / row["clips"]) / (rows[0]["seconds"] / rows[0]["clips"]), 2)
    return {
        "scaling": rows,
        "data_wait_fraction": max(r["data_wait_fraction"] for r in rows),
        "frontend_calls_during_training": len(calls),
    }


def compiled_training(size: int, batch: int, frames: int, folder: Path) -> dict:
    """Two real epochs of ``size`` clips with and without ``--compile``: the speed-up of a compiled epoch, and when it pays back.

    The second epoch is the steady one; each run's fixed cost is its wall time less two steady
    epochs: validation and setup, and for the compiled run the compilation of the training and
    validation graphs (most of it inside the first epoch).
    """
    table, paths = _synthetic_run(size, batch, frames, folder, np.random.default_rng(0))
    runs = {
        compiled: _train_epochs(table, paths, folder / f"compiled-{compiled}", 2, batch, compiled) for compiled in (False, True)
    }
    eager, compiled = (
        {
            "epoch_s": float(runs[c]["seconds"].iloc[-1]),
            "fixed_s": runs[c].attrs["wall_s"] - 2 * float(runs[c]["seconds"].iloc[-1]),
        }
        for c in (False, True)
    )
    return {"clips": size, "eager": eager, "compiled": compiled, **payback(eager, compiled)}


def payback(eager: dict, compiled: dict) -> dict:
    """A compiled epoch's speed-up over an eager one, and the epochs after which compiling has paid back its fixed cost.

    Example:
        >>> payback({"epoch_s": 50.0, "fixed_s": 10.0}, {"epoch_s": 40.0, "fixed_s": 310.0})
        {'speedup': 1.25, 'pays_back_after_epochs': 30.0}
        >>> payback({"epoch_s": 50.0, "fixed_s": 10.0}, {"epoch_s": 51.0, "fixed_s": 310.0})["pays_back_after_epochs"] is None
        True
    """
    saved_per_epoch = eager["epoch_s"] - compiled["epoch_s"]
    extra = compiled["fixed_s"] - eager["fixed_s"]
    return {
        "speedup": round(eager["epoch_s"] / compiled["epoch_s"], 2),
        "pays_back_after_epochs": round(extra / saved_per_epoch, 1) if saved_per_epoch > 0 else None,
    }


def _table(title: str, rows: list[dict]) -> str:
    lines = [f"\n{title}", "| path | batch | clips/s | speed-up | peak memory (GB) |", "|---|---|---|---|---|"]
    for row in rows:
        batch = f"{row['batch_size']}" + (f" ({row['micro_batch_size']} per call)" if row["micro_batch_size"] else "")
        lines.append(f"| {row['name']} | {batch} | {row['clips_per_s']:.1f} | {row['speedup']:.2f}x | {row['peak_rss_gb']:.2f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=32, help="clips per training step and per inference call (32)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per configuration and round; the best is kept (4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds in which the configurations take turns (2)")
    parser.add_argument("--sizes", type=int, nargs=3, default=[128, 256, 512], help="training clips of the three epochs timed")
    parser.add_argument("--compile-clips", type=int, default=704, help="training clips of the compiled epochs (704, NIPS4B's)")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="recordings for the front-end (../shared/data/frogs)")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="toy sizes: checks every code path, measures nothing useful")
    args = parser.parse_args(argv)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)  # no banners between the tables
    frames = 376
    if args.quick:
        args.batch_size, args.steps, args.rounds, args.sizes, frames = 4, 1, 1, [8, 16, 24], 64
    batch = micro = args.batch_size

    figures: dict = {
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "threads": torch.get_num_threads(),
            "torch": torch.__version__,
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        },
        "settings": {"batch_size": batch, "steps": args.steps, "rounds": args.rounds, "frames": frames, "quick": args.quick},
    }
    print(f"{figures['machine']}; input 1 x 128 x {frames}; best of {args.steps} steps x {args.rounds} rounds", flush=True)
    figures["training"] = compare(time_training, training_setups(batch, micro), args.rounds, args.steps, frames)
    print(_table("Training step (Mix2 mixing, BCE, backward, AdamW)", figures["training"]), flush=True)
    figures["inference"] = compare(time_inference, inference_setups(batch), args.rounds, args.steps, frames)
    print(_table("Inference (the model on cached features)", figures["inference"]), flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        if args.data.is_dir():
            recordings = sorted(p for p in args.data.rglob("*") if p.suffix.lower() in {".wav", ".flac", ".mp3", ".ogg"})
            figures["frontend"], figures["cache_read"] = frontend_and_cache(
                recordings[: 3 if args.quick else None], Path(tmp) / "cache", batch
            )
            print(f"\nFront-end (decode, resample, log-mel, cache write): {figures['frontend']}")
            print(f"Cache read (float16 files through the training loader): {figures['cache_read']}", flush=True)
        else:
            figures["frontend"] = figures["cache_read"] = None
            print(f"\nFront-end and cache read skipped: {args.data} is absent (they read ../shared/data/frogs by default)")
        figures["epochs"] = epochs(args.sizes, batch, frames, Path(tmp))
    print("\nOne training epoch of mix2 train (Mix2 mixing) at three sizes")
    print("| training clips | seconds | clips/s | seconds per clip vs the smallest | waiting for data |\n|---|---|---|---|---|")
    for row in figures["epochs"]["scaling"]:
        print(
            f"| {row['clips']} | {row['seconds']:.1f} | {row['clips_per_s']:.1f} | {row['seconds_per_clip_vs_smallest']:.2f} | {100 * row['data_wait_fraction']:.1f}% |"
        )
    print(f"front-end calls during training: {figures['epochs']['frontend_calls_during_training']}")

    if args.quick:  # compiling takes minutes at any size
        figures["compile"] = None
        print("\nCompiled training (--compile): skipped in --quick")
    else:
        with tempfile.TemporaryDirectory() as tmp:
            figures["compile"] = compiled_training(args.compile_clips, batch, frames, Path(tmp))
        compiled = figures["compile"]
        print(f"\nCompiled training (--compile), two epochs of {compiled['clips']} clips (Mix2 mixing)")
        print("| | epoch (s) | fixed: compilation, validation (s) |\n|---|---|---|")
        for name in ("eager", "compiled"):
            print(f"| {name} | {compiled[name]['epoch_s']:.1f} | {compiled[name]['fixed_s']:.1f} |")
        after = compiled["pays_back_after_epochs"]
        print(
            f"compiled epoch: {compiled['speedup']:.2f}x; " + (f"pays back after {after} epochs" if after else "never pays back")
        )

    training = next(r for r in figures["training"] if r["name"].startswith("mix2:"))["speedup"]
    inference = next(r for r in figures["inference"] if r["name"].startswith("mix2:"))["speedup"]
    wait = figures["epochs"]["data_wait_fraction"]
    figures["targets"] = {
        "training_speedup": {"target": TARGETS["training"], "measured": training, "met": training >= TARGETS["training"]},
        "inference_speedup": {"target": TARGETS["inference"], "measured": inference, "met": inference >= TARGETS["inference"]},
        "data_wait_fraction": {
            "target": TARGETS["data_wait_fraction"],
            "measured": wait,
            "met": wait < TARGETS["data_wait_fraction"],
        },
        **(
            {}
            if figures["compile"] is None
            else {
                "compiled_training_speedup": {
                    "target": TARGETS["compiled_training"],
                    "measured": figures["compile"]["speedup"],
                    "met": figures["compile"]["speedup"] >= TARGETS["compiled_training"],
                }
            }
        ),
        "features_recomputed": {
            "target": 0,
            "measured": figures["epochs"]["frontend_calls_during_training"],
            "met": figures["epochs"]["frontend_calls_during_training"] == 0,
        },
    }
    print("\nTargets")
    for name, target in figures["targets"].items():
        print(f"- {name}: {target['measured']} (target {target['target']}): {'met' if target['met'] else 'NOT met'}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
        print(f"figures: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
