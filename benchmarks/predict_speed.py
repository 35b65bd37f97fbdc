"""Predict throughput against a naive loop, measured in the same run on the same recordings.

The naive loop is what a first script does: for each window, read its audio alone, compute its
log-mel, and call the model on that one clip, in fp32 with the default memory layout. It is
compared with ``mix2.predict`` (block reads, batches of 64 filled across recordings,
channels_last; batch norm folded in fp32; windows cut from each block's log-mel) in fp32 with
every inference engine installed (PyTorch, ONNX Runtime, OpenVINO), with each window transformed
alone (``--exact-windows``), in bf16 (OpenVINO's, and PyTorch's autocast), and in int8 (OpenVINO;
calibrated on random features, since only its speed is measured here); and ``mix2.embed``
(each window's embedding) on every engine. Figures are printed as ratios against the naive loop and as
hours of audio per minute; the model is MobileNetV3-Large with random weights (speed does not
depend on the weights).

    python benchmarks/predict_speed.py                 # ../shared/data/frogs, 187 windows
    python benchmarks/predict_speed.py --repeat 3 PATH...
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from mix2 import default_config
from mix2.data.audio import duration_s, fit_length, read_audio
from mix2.engines import engine_names, exported_onnx, installed, int8_files
from mix2.inference import input_shape, load_trained_model
from mix2.predict import WindowScorer, embed, find_recordings, predict, recording_windows
from mix2.quantize import write_int8_network
from mix2.training import Classifier

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "frogs"


def random_checkpoint(folder: Path, channels_last: bool) -> Path:
    torch.manual_seed(0)
    config = default_config("data")
    config.train.channels_last = channels_last
    module = Classifier(config.to_dict(), [f"species_{i}" for i in range(42)]).eval()
    path = folder / f"model-{'cl' if channels_last else 'default'}.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return path


def unchecked_int8(checkpoint: Path) -> None:
    """An int8 network for ``checkpoint``, calibrated on random features and marked offered unchecked: for speed only."""
    trained = load_trained_model(checkpoint)
    network, record = int8_files(trained, checkpoint)
    calibration = [torch.rand(16, 1, *input_shape(trained.config)) * 2 - 1]
    write_int8_network(exported_onnx(trained, checkpoint), calibration, network, progress=False)
    record.write_text(json.dumps({"offered": True, "verdict": "calibrated on random features, for speed only"}))


def naive_loop(checkpoint: Path, recordings: list[Path]) -> int:
    """One window at a time: read it alone, its log-mel, PyTorch's model on a batch of one."""
    scorer, windows = WindowScorer(load_trained_model(checkpoint), checkpoint, engine="torch"), 0
    for path in recordings:
        for start_s, _ in recording_windows(duration_s(path), 3.0, 1.0):
            clip = fit_length(read_audio(path, 16_000, start_s, 3.0), 48_000)
            scorer(torch.from_numpy(clip[None]))
            windows += 1
    return windows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, default=[DEFAULT_DATA])
    parser.add_argument("--repeat", type=int, default=2, help="timed repetitions of each method; the best is kept")
    args = parser.parse_args(argv)
    if not all(p.exists() for p in args.paths):
        print(f"skipped: {', '.join(map(str, args.paths))} absent (the benchmark reads ../shared/data/frogs by default)")
        return 0
    recordings = find_recordings(args.paths)
    audio_h = sum(duration_s(p) for p in recordings) / 3600
    with tempfile.TemporaryDirectory() as tmp:
        naive_checkpoint = random_checkpoint(Path(tmp), channels_last=False)
        fast = random_checkpoint(Path(tmp), channels_last=True)
        methods = {
            "naive loop (fp32, torch, default layout, 1 window per call)": lambda: naive_loop(naive_checkpoint, recordings)
        }
        for engine in [name for name in engine_names() if name != "auto" and installed(name)]:
            methods[f"mix2 predict, fp32, {engine}"] = lambda e=engine: len(predict(fast, recordings, engine=e, progress=False))
        methods["mix2 predict, fp32, auto engine, --exact-windows"] = lambda: len(
            predict(fast, recordings, exact_windows=True, progress=False)
        )
        methods["mix2 predict, bf16, torch"] = lambda: len(predict(fast, recordings, precision="bf16", progress=False))
        if installed("openvino"):
            methods["mix2 predict, bf16, openvino"] = lambda: len(
                predict(fast, recordings, precision="bf16", engine="openvino", progress=False)
            )
        if installed("openvino") and importlib.util.find_spec("nncf"):
            unchecked_int8(fast)
            methods["mix2 predict, int8, openvino"] = lambda: len(predict(fast, recordings, precision="int8", progress=False))
        for engine in [name for name in engine_names() if name != "auto" and installed(name)]:
            methods[f"mix2 embed, fp32, {engine}"] = lambda e=engine: len(embed(fast, recordings, engine=e, progress=False)[0])
        timings = {}
        for name, run in methods.items():
            run()  # warm-up: first-call allocations and kernel selection
            best = float("inf")
            for _ in range(args.repeat):
                started = time.perf_counter()
                windows = run()
                best = min(best, time.perf_counter() - started)
            timings[name] = best
    baseline = next(iter(timings.values()))
    print(f"{len(recordings)} recordings, {audio_h * 60:.1f} min of audio, {windows} windows; {torch.get_num_threads()} threads")
    print("| method | seconds | speed-up | h of audio per minute |")
    print("|---|---|---|---|")
    for name, seconds in timings.items():
        print(f"| {name} | {seconds:.2f} | {baseline / seconds:.2f}x | {audio_h / (seconds / 60):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
