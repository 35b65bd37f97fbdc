"""The predict job: recordings -> window scores -> detections, written to a resumable output folder."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from mix2.data.audio import NOT_UTF8, is_utf8
from mix2.errors import Mix2Error, input_error
from mix2.inference import TrainedModel, load_trained_model, resolve_checkpoint
from mix2.predict.detections import detections, thresholds_from
from mix2.predict.output import JobFolder, PredictState
from mix2.predict.scoring import WindowScorer, score_recordings, window_frame
from mix2.predict.shards import check_shard, shard_of
from mix2.predict.windows import Window, find_recordings


def predict(
    checkpoint: str | Path,
    paths: list[str | Path],
    out_dir: str | Path | None = None,
    hop_s: float = 1.0,
    batch_size: int = 64,
    thresholds: float | str | Path | dict[str, float] = 0.5,
    precision: str = "fp32",
    engine: str = "auto",
    exact_windows: bool = False,
    parquet: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Score every window of every recording in ``paths``; returns the score table.

    Args:
        checkpoint: a ``.ckpt`` written by ``mix2 train`` (it carries the classes, the front-end
            settings, the model name and the tuned thresholds), or a run folder (its
            ``checkpoints/best.ckpt``).
        paths: audio files, or folders searched recursively.
        out_dir: where to write the tables (see the module docstring); ``None`` writes nothing.
        hop_s: seconds between window starts (1).
        batch_size: windows per model call; batches are filled across recordings (64).
        thresholds: for the detections: a number (0.5, the paper's), ``"checkpoint"`` (the
            per-class thresholds tuned on validation at training; 0.5 where the checkpoint has
            none), a dict, or a CSV file with ``class`` and ``threshold`` columns.
        precision: ``"fp32"``; ``"bf16"`` (PyTorch's autocast, scores within 0.05 of fp32; with
            ``engine="openvino"``, OpenVINO's, within 0.1; tested); or ``"int8"`` (OpenVINO, the network
            ``mix2 quantize`` made and offered; see :mod:`mix2.quantize`).
        engine: what runs the network (:mod:`mix2.engines`): ``"auto"`` (ONNX Runtime, then
            OpenVINO, then PyTorch: the first installed), ``"torch"``, ``"onnxruntime"`` or
            ``"openvino"``; the one that ran is stored in the output folder, and a resumed run
            must use it again.
        exact_windows: transform each window alone, exactly as training and evaluation do,
            instead of cutting its frames from one log-mel of its block of audio (see
            :meth:`~mix2.predict.scoring.WindowScorer.window_features`); faster by default, and
            exact where ``hop_s`` is not a whole number of the front-end's hops anyway.
        parquet: also write ``scores.parquet`` (needs pyarrow).
        progress: show a progress bar.

    The table's ``attrs`` hold ``scored_audio_s`` and ``elapsed_s`` (the audio this call scored,
    recordings done before excluded, and the time it took) and ``failures`` (a count).
    """
    setup = JobSetup.of(checkpoint, paths, hop_s, batch_size, shard)
    trained = setup.trained
    if not trained.classes:
        raise input_error(
            setup.checkpoint,
            "a pretrained network with no classes to score; fine-tune it with mix2 train --init, or embed with mix2 embed",
        )
    if isinstance(thresholds, str) and thresholds == "checkpoint":
        thresholds = trained.thresholds if trained.thresholds is not None else 0.5
    per_class = thresholds_from(trained.classes, thresholds)
    sample_rate_hz = trained.config.features.sample_rate_hz
    classes_thresholds = dict(zip(trained.classes, per_class.tolist()))
    scorer = WindowScorer(trained, setup.checkpoint, precision, engine)
    exact = exact_windows or not scorer.cuts_from_blocks(hop_s)
    settings = {"precision": precision, "engine": scorer.engine.name, "windows": "exact" if exact else "block"}
    state = PredictState(Path(out_dir), setup.checkpoint, hop_s, settings, classes_thresholds, shard) if out_dir else None
    parts: dict[int, pd.DataFrame] = {}

    def keep(index: int, windows: list[Window], scores: np.ndarray) -> None:
        path = setup.recordings[index]
        frame = pd.concat([window_frame(path, windows), pd.DataFrame(scores, columns=trained.classes)], axis=1)
        if state:
            state.record(path, frame)
        else:
            parts[index] = frame

    run = run_recordings(setup, scorer, state, exact, keep, progress, "predict")
    recordings = setup.recordings
    if state:  # every table is built from the parts on disk, so a resumed run gives the same table
        state.write_failures(recordings, run.failures)
        done = state.done()
        parts = {i: state.read_part(done[str(p)], trained.classes) for i, p in enumerate(recordings) if str(p) in done}
    columns = ["file", "start_s", "end_s", *trained.classes]
    scores_table = pd.concat([parts[i] for i in sorted(parts)], ignore_index=True) if parts else pd.DataFrame(columns=columns)
    found = detections(scores_table, per_class)
    if state:
        state.write_results(scores_table, found, recordings, run.failures, parquet, sample_rate_hz / 2)
        state.finish(setup.listing, max_frequency_hz=sample_rate_hz / 2)
    # What this call did, for the caller to report: the audio it scored and how long that took.
    scores_table.attrs.update(scored_audio_s=run.audio_s, elapsed_s=run.elapsed_s, failures=len(run.failures))
    return scores_table


@dataclass
class JobSetup:
    """What a job over recordings (predict, embed) starts from, checked before any work."""

    checkpoint: Path
    trained: TrainedModel
    listing: list[Path]
    recordings: list[Path]
    hop_s: float
    batch_size: int

    @classmethod
    def of(
        cls,
        checkpoint: str | Path,
        paths: list[str | Path],
        hop_s: float,
        batch_size: int,
        shard: tuple[int, int] | None = None,
    ) -> JobSetup:
        """Check the settings, load the checkpoint and list the recordings (this shard's, where given)."""
        if hop_s <= 0 or batch_size < 1:
            raise Mix2Error(f"hop_s must be positive and batch_size at least 1 (got {hop_s}, {batch_size})")
        if shard is not None:
            check_shard(shard)
        checkpoint = resolve_checkpoint(checkpoint)
        trained = load_trained_model(checkpoint)
        listing = find_recordings(paths)
        recordings = listing if shard is None else [p for p in listing if shard_of(p, shard[1]) == shard[0]]
        return cls(checkpoint, trained, listing, recordings, hop_s, batch_size)


@dataclass
class JobRun:
    """What a job's pass over its recordings did: the failures (index -> reason), the audio it read, its time."""

    failures: dict[int, str]
    audio_s: float
    elapsed_s: float


def run_recordings(
    setup: JobSetup,
    scorer: WindowScorer,
    state: JobFolder | None,
    exact: bool,
    keep: Callable[[int, list[Window], np.ndarray], None],
    progress: bool,
    desc: str,
) -> JobRun:
    """Pass every recording not done in ``state`` through ``scorer``, giving each one's windows and outputs to ``keep``.

    Recordings that failed before (in ``state``) or whose path is not UTF-8 are not tried; the
    others' failures are added as they happen.
    """
    recordings = setup.recordings
    done = state.done() if state else {}
    failures: dict[int, str] = dict(state.failures(recordings)) if state else {}
    failures.update({i: NOT_UTF8 for i, path in enumerate(recordings) if not is_utf8(path)})
    todo = [i for i, path in enumerate(recordings) if str(path) not in done and i not in failures]
    window_s = setup.trained.config.data.window_s
    started, audio_s = time.perf_counter(), 0.0
    bar = tqdm(total=len(todo), unit="file", desc=desc, disable=not progress)
    outputs = score_recordings(recordings, todo, scorer, window_s, setup.hop_s, setup.batch_size, failures, exact)
    for index, (windows, scores) in outputs:
        keep(index, windows, scores)
        audio_s += windows[-1].end_s
        bar.update(1)
    bar.close()
    return JobRun(failures, audio_s, time.perf_counter() - started)
