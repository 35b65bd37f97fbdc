"""``mix2 quantize``: a run's network in int8 for CPU inference, checked on the run's own test clips.

OpenVINO's post-training quantisation (NNCF's ``nncf.quantize``) turns the exported network's
weights and activations to int8, calibrated on the run's validation clips (each activation's
range is measured on them). Then the test clips are scored in fp32, bf16 and int8 on OpenVINO,
and each reduced precision is compared with fp32 on the metrics a user publishes: macro F1
over the active classes at the run's threshold and at the tuned thresholds, and mAP. A
precision is offered where none of them moves by more than :data:`LIMIT_POINTS`;
``mix2 predict --precision int8`` runs the int8 network only where its check passed
(:func:`mix2.engines.int8_network`). bf16 (OpenVINO's, ``--precision bf16 --engine openvino``)
needs no file of its own and is always offered; its check is printed for the user to judge.

The int8 network and the check's record are written beside the checkpoint
(:func:`mix2.engines.int8_files`), named by the network's digest, so a retrained checkpoint is
never run with an old quantisation.

Example:
    >>> check = quantize("runs/nips4b-20261201-101500")  # doctest: +SKIP
    >>> check["offered"], check["differences"]["int8"]["map"]  # doctest: +SKIP
    (True, -0.12)
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from mix2.config import RunConfig
from mix2.data.clips import ClipTable
from mix2.engines import Engine, OpenVinoEngine, exported_onnx, int8_files, remove_other_weights
from mix2.errors import Mix2Error, input_error
from mix2.files import atomic_path
from mix2.inference import load_trained_model
from mix2.run import check_trained, feature_batches, scored_metrics
from mix2.run_folder import read_run_clips

LIMIT_POINTS = 0.5
"""The most a reduced precision may move macro F1 or mAP on the test clips, in points, and still be offered."""
CHECKED = {
    "macro F1 @threshold": lambda m: m["macro_f1_active"],
    "macro F1 tuned": lambda m: m["tuned"]["macro_f1_active"],
    "mAP": lambda m: m["map"],
}
"""The metrics each reduced precision is held to, read from :func:`~mix2.run.scored_metrics`'s result."""


def quantize(run_dir: str | Path, checkpoint: str = "best", progress: bool = True) -> dict:
    """Quantise a finished run's network to int8, calibrated on its validation clips; check int8 and bf16 on its test clips.

    Args:
        run_dir: a run folder written by ``mix2 train``, finished and evaluated (the tuned
            thresholds are read from its checkpoint).
        checkpoint: ``"best"`` or ``"last"``.
        progress: show progress bars while features are read.

    Returns the check, also written as JSON beside the int8 network: ``metrics`` (points, per
    precision and metric), ``differences`` (each reduced precision minus fp32, in points),
    ``clips_per_s`` (the network alone, per precision, on the test clips), ``offered`` (int8
    within :data:`LIMIT_POINTS` on every metric), ``verdict`` (a sentence), ``network``,
    ``calibration_clips`` and ``test_clips``.
    """
    if not all(importlib.util.find_spec(package) for package in ("openvino", "nncf")):
        raise Mix2Error("mix2 quantize needs OpenVINO and NNCF: pip install openvino nncf")
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise input_error(run_dir, "not a mix2 run folder (it has no config.yaml)")
    config = RunConfig.from_yaml(run_dir / "config.yaml")
    check_trained(run_dir, config.train.epochs)
    checkpoint_path = run_dir / "checkpoints" / f"{checkpoint}.ckpt"
    trained = load_trained_model(checkpoint_path)
    if trained.thresholds is None:
        raise input_error(
            checkpoint_path, f"no tuned thresholds yet; evaluate it first: mix2 evaluate {run_dir} --checkpoint {checkpoint}"
        )
    table = read_run_clips(run_dir)
    val, test = table.split("val"), table.split("test")
    for split, clips in (("validation", val), ("test", test)):
        if len(clips) == 0:
            raise input_error(run_dir / "clips.csv", f"no clips in the {split} split, which int8 needs")

    def features(clips: ClipTable, split: str) -> list[torch.Tensor]:
        return [x for x, _ in feature_batches(clips, split, config, run_dir, progress)]

    onnx = exported_onnx(trained, checkpoint_path)
    network_file, record_file = int8_files(trained, checkpoint_path)
    write_int8_network(onnx, features(val, "validation"), network_file, progress)
    test_batches = features(test, "test")
    engines = {
        "fp32": OpenVinoEngine(onnx, hint="f32"),
        "bf16": OpenVinoEngine(onnx, hint="bf16"),
        "int8": OpenVinoEngine(network_file, hint=None),  # as mix2 predict runs it
    }
    metrics, clips_per_s = {}, {}
    for precision, engine in engines.items():
        scores, seconds = _timed_scores(engine, test_batches)
        scored = scored_metrics(table, config, test.labels, scores, trained.thresholds)
        metrics[precision] = {name: round(100 * read(scored), 2) for name, read in CHECKED.items()}
        clips_per_s[precision] = round(len(test) / seconds, 1)
    check = precision_check(metrics)
    check.update(
        clips_per_s=clips_per_s,
        network=str(network_file),
        calibration_clips=len(val),
        test_clips=len(test),
    )
    with atomic_path(record_file) as partial:
        partial.write_text(json.dumps(check, indent=2))
    for written in (network_file, network_file.with_suffix(".bin"), record_file):
        remove_other_weights(written, checkpoint_path)
    return check


def precision_check(metrics: dict[str, dict[str, float]]) -> dict:
    """Each reduced precision's ``metrics`` (points) against fp32's; int8 ``offered`` where none moves by over :data:`LIMIT_POINTS`.

    Example:
        >>> check = precision_check({"fp32": {"mAP": 40.0}, "bf16": {"mAP": 40.1}, "int8": {"mAP": 39.2}})
        >>> check["differences"]["int8"], check["offered"]
        ({'mAP': -0.8}, False)
        >>> check["verdict"]
        'int8 moved mAP by -0.8 points, more than 0.5'
    """
    differences = {
        precision: {name: round(value - metrics["fp32"][name], 2) for name, value in values.items()}
        for precision, values in metrics.items()
        if precision != "fp32"
    }
    moved = {name: change for name, change in differences["int8"].items() if abs(change) > LIMIT_POINTS}
    if moved:
        verdict = "int8 moved " + ", ".join(f"{name} by {change:+.1f} points" for name, change in moved.items())
        verdict += f", more than {LIMIT_POINTS}"
    else:
        verdict = f"int8 stayed within {LIMIT_POINTS} points of fp32 on every metric"
    return {
        "metrics": metrics,
        "differences": differences,
        "limit_points": LIMIT_POINTS,
        "offered": not moved,
        "verdict": verdict,
    }


def write_int8_network(onnx: Path, calibration: list[torch.Tensor], network_file: Path, progress: bool = True) -> None:
    """Quantise the ``onnx`` network to int8 with NNCF, calibrated on every clip of ``calibration`` (batches of features).

    Written as OpenVINO's ``.xml`` and ``.bin``, each saved in a folder of this process's own and
    moved into place, the weights first.
    """
    import nncf
    import openvino

    clips = [batch[i : i + 1].numpy() for batch in calibration for i in range(len(batch))]
    quiet = contextlib.ExitStack()
    if not progress:  # NNCF draws its progress bars on the console, whatever its logger's level
        quiet.enter_context(contextlib.redirect_stdout(io.StringIO()))
        quiet.enter_context(contextlib.redirect_stderr(io.StringIO()))
    with quiet:
        quantized = nncf.quantize(openvino.Core().read_model(str(onnx)), nncf.Dataset(clips), subset_size=len(clips))
    with tempfile.TemporaryDirectory(dir=network_file.parent, prefix=f".{network_file.name}.") as folder:
        openvino.save_model(quantized, str(Path(folder) / "network.xml"), compress_to_fp16=False)
        for suffix in (".bin", ".xml"):
            (Path(folder) / "network").with_suffix(suffix).replace(network_file.with_suffix(suffix))


def _timed_scores(engine: Engine, batches: list[torch.Tensor]) -> tuple[np.ndarray, float]:
    """``(clips, classes)`` probabilities of ``engine`` on ``batches``, and the seconds its calls took (after one untimed call)."""
    engine(batches[0])
    started = time.perf_counter()
    logits = [engine(x) for x in batches]
    return torch.sigmoid(torch.cat(logits)).numpy(), time.perf_counter() - started
