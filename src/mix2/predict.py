"""Predict: slide the training window over long recordings and say which species call when.

``predict(checkpoint, paths)`` finds the recordings (files, or folders searched recursively for
wav, flac, mp3 and ogg), cuts each into windows of the checkpoint's length (3 s) every ``hop_s``
(1 s), scores them in batches filled across recordings, and returns one row per window:
``file, start_s, end_s`` and one probability column per class.

Windows start at 0, ``hop_s``, ``2 hop_s``, ... as long as they fit in the recording. Where the
last full window ends before the recording does, one more window starts a hop later and covers
the tail: its audio is zero-padded to the window length, as training pads short clips, and its
``end_s`` is the recording's end. A recording shorter than one window gives one padded window.

Each window's audio is decoded with soundfile's partial reads, at most 2 minutes at a time,
so memory stays bounded on hours-long recordings; it is mixed to mono and resampled with soxr
window by window, exactly as ``read_audio(file, start_s, window_s)`` reads a clip alone. The
log-mel features are rounded to float16 as in the training cache, so a window scores exactly as
the same clip does in evaluation.

With ``out_dir`` the results are written there, and a re-run goes on where the last one stopped:

- ``scores.csv`` (and ``scores.parquet`` with ``parquet=True``): the window scores;
- ``detections.csv``: ``file, species, start_s, end_s, max_score``, consecutive windows over the
  species' threshold merged into one detection;
- ``raven/<file>.selections.txt``: one Raven selection table per recording;
- ``failures.csv``: recordings that could not be read, with the reason; they are skipped;
- ``parts/`` and ``done.jsonl``: one score file per finished recording, recorded atomically;
  recordings already listed in ``done.jsonl`` are not scored again;
- ``predict.json``: the settings (the checkpoint's digest, the hop, the precision, the shard
  and the per-class thresholds), so that a re-run with other settings is refused, and once
  the job has finished, what it covered (the listing's digest).

Large archives split over ``N`` independent jobs (a cluster's array job): ``shard=(i, n)``
scores only the recordings of shard ``i`` of ``n`` (:func:`shard_of`, from a hash of each
recording's path, so every recording falls in exactly one shard), and :func:`merge_predictions`
joins the ``n`` finished output folders into one, checking that they cover every recording of
one listing exactly once.

Example:
    >>> scores = predict("runs/chorus-.../checkpoints/best.ckpt", ["recordings/"])  # doctest: +SKIP
    >>> detections(scores, thresholds_from(scores.columns[3:], 0.5))  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf
import torch
from tqdm.auto import tqdm

from mix2.config import pick_device
from mix2.data.audio import (
    AUDIO_EXTENSIONS,
    NOT_UTF8,
    duration_s,
    ends_before,
    find_audio,
    fit_length,
    is_utf8,
    printable,
    resample_checked,
    unreadable_audio,
)
from mix2.data.events import TIME_TOLERANCE_S, window_starts
from mix2.errors import Mix2Error, input_error
from mix2.features.logmel import LogMel, normalize_per_clip
from mix2.files import atomic_path, md5sum
from mix2.inference import InferenceModel, TrainedModel, load_trained_model, resolve_checkpoint

BLOCK_S = 120.0
"""The most audio read at once from one recording, in seconds (more only where one window is longer)."""
PRECISIONS = ("fp32", "bf16")
BF16_TOLERANCE = 0.05
"""The largest difference between a bf16 and an fp32 score that the tests accept."""


@dataclass(frozen=True)
class Window:
    """One window of a recording, in seconds."""

    start_s: float
    end_s: float


def find_recordings(paths: list[str | Path]) -> list[Path]:
    """Audio files among ``paths``: files as given, folders searched recursively, in sorted order.

    Files whose names are not valid UTF-8 are included; :func:`predict` lists them as failures.
    """
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += find_audio(path)
        elif path.is_file():
            found.append(path)
        else:
            raise input_error(path, "no such file or folder")
    if not found:
        raise Mix2Error(f"no audio files ({', '.join(AUDIO_EXTENSIONS)}) in {', '.join(map(str, paths))}")
    return list(dict.fromkeys(found))


def recording_windows(duration_s: float, window_s: float, hop_s: float) -> list[tuple[float, float]]:
    """``(start_s, end_s)`` of every window of a recording, the padded tail window included.

    Example:
        >>> recording_windows(4.5, 3.0, 1.0)
        [(0.0, 3.0), (1.0, 4.0), (2.0, 4.5)]
    """
    starts = window_starts(duration_s, window_s, hop_s)
    windows = [(float(s), float(min(s + window_s, duration_s))) for s in starts]
    tail = float(np.round(starts[-1] + hop_s, 6))
    if starts[-1] + window_s < duration_s - TIME_TOLERANCE_S and tail < duration_s - TIME_TOLERANCE_S:
        windows.append((tail, float(duration_s)))
    return windows


class WindowScorer:
    """Audio windows ``(batch, samples)`` at the model's rate -> probabilities ``(batch, classes)``.

    The log-mel front-end of the checkpoint, features rounded to float16 as in the training
    cache, per-clip scaling (:func:`~mix2.features.logmel.normalize_per_clip` with the checkpoint's ``top_db``), then the network (:class:`~mix2.inference.InferenceModel`):
    in fp32 with batch norm folded into its convolutions, or (``precision="bf16"``) under
    autocast to bfloat16, all on ``device`` (default: the GPU where there is one, else the CPU).
    """

    def __init__(self, trained: TrainedModel, precision: str = "fp32", device: torch.device | str | None = None) -> None:
        if precision not in PRECISIONS:
            raise Mix2Error(f"unknown precision '{precision}'; choose one of: {', '.join(PRECISIONS)}")
        self.device = torch.device(device) if device is not None else pick_device()
        self.model = InferenceModel(trained, fold=precision == "fp32").to(self.device)
        self.frontend = LogMel(**trained.config.features.logmel_settings()).to(self.device)
        self.top_db = trained.config.features.top_db
        self.precision = precision

    @torch.inference_mode()
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        features = self.frontend(audio.to(self.device)).to(torch.float16).float()[:, None]
        features = normalize_per_clip(features, self.top_db)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
            logits = self.model(features)
        return torch.sigmoid(logits.float()).cpu().numpy()


def read_windows(path: Path, windows: list[Window], window_s: float, sample_rate_hz: int) -> Iterator[np.ndarray]:
    """The mono audio of each window, ``(round(window_s * sample_rate_hz),)``, read a block at a time."""
    length = round(window_s * sample_rate_hz)
    try:
        with sf.SoundFile(str(path)) as audio:
            native_hz = audio.samplerate
            span = round(window_s * native_hz)
            for block in _blocks(windows, window_s):
                first = round(block[0].start_s * native_hz)
                audio.seek(min(first, audio.frames))
                samples = audio.read(round(block[-1].start_s * native_hz) + span - first, dtype="float32", always_2d=True)
                mono = samples.mean(axis=1)
                for window in block:
                    offset = round(window.start_s * native_hz) - first
                    if offset >= mono.size:  # the header promised more audio than the file holds
                        raise ends_before(path, window.start_s, (first + mono.size) / native_hz)
                    clip = resample_checked(mono[offset : offset + span], native_hz, sample_rate_hz, path)
                    yield fit_length(clip, length)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise unreadable_audio(path, err) from None


def _blocks(windows: list[Window], window_s: float) -> Iterator[list[Window]]:
    """Consecutive runs of windows whose audio spans at most :data:`BLOCK_S` (at least one window each)."""
    block: list[Window] = []
    for window in windows:
        if block and window.start_s + window_s - block[0].start_s > BLOCK_S:
            yield block
            block = []
        block.append(window)
    if block:
        yield block


THRESHOLD_FORMS = (
    "a number between 0 and 1 (0.5), 'checkpoint' (tuned on validation at training), or a CSV file with class,threshold"
)


def thresholds_from(classes: list[str], thresholds: float | str | Path | dict[str, float] | np.ndarray) -> np.ndarray:
    """Per-class thresholds ``(classes,)`` from a number, a dict, an array or a CSV (``class``/``label``, ``threshold``).

    Every threshold given must lie strictly between 0 and 1: a score is a probability. An array
    (the thresholds a checkpoint stores, tuned on validation) is taken as it is.
    """
    if isinstance(thresholds, np.ndarray):  # as tuned and stored in a checkpoint
        return thresholds.astype(np.float64)
    source = str(thresholds) if isinstance(thresholds, (int, float, str, Path)) else "thresholds"
    if isinstance(thresholds, (int, float)):
        values = np.full(len(classes), float(thresholds))
    else:
        if isinstance(thresholds, (str, Path)):
            path = Path(thresholds)
            if not path.is_file():
                raise Mix2Error(f"thresholds '{thresholds}': no such file; thresholds are {THRESHOLD_FORMS}")
            table = pd.read_csv(path)
            name = next((c for c in ("class", "label", "species") if c in table.columns), None)
            if name is None or "threshold" not in table.columns:
                raise input_error(path, "a thresholds file needs a 'class' and a 'threshold' column")
            thresholds = dict(zip(table[name].astype(str), pd.to_numeric(table["threshold"], errors="coerce")))
            missing = [c for c in classes if c not in thresholds]
            if missing:
                raise input_error(path, f"no threshold for {len(missing)} class(es), e.g. '{missing[0]}'")
        values = np.array([float(thresholds[c]) for c in classes])
    outside = [(c, v) for c, v in zip(classes, values) if not 0 < v < 1]
    if outside:
        name, value = outside[0]
        where = f"thresholds '{source}'" if source != "thresholds" else "thresholds"
        raise Mix2Error(f"{where}: each threshold must lie between 0 and 1, got {value} for '{name}'")
    return values


def detections(scores: pd.DataFrame, thresholds: np.ndarray) -> pd.DataFrame:
    """Windows over their class's threshold, overlapping ones merged: ``file, species, start_s, end_s, max_score``.

    Windows of one recording and species over the threshold are merged into one detection
    wherever the next starts before, or where, the detection so far ends (they overlap or
    touch), even with a window under the threshold between them; a detection spans from its
    first start to its last end, so the detections of one species never overlap.
    """
    classes = list(scores.columns[3:])
    rows = []
    for file, windows in scores.groupby("file", sort=False):
        starts, ends = windows["start_s"].to_numpy(), windows["end_s"].to_numpy()
        values = windows[classes].to_numpy()
        for k, species in enumerate(classes):
            current: list | None = None
            for i in np.flatnonzero(values[:, k] >= thresholds[k]):
                if current is not None and starts[i] <= current[3] + TIME_TOLERANCE_S:
                    current[3], current[4] = max(current[3], ends[i]), max(current[4], values[i, k])
                    continue
                if current is not None:
                    rows.append(current)
                current = [file, species, starts[i], ends[i], values[i, k]]
            if current is not None:
                rows.append(current)
    frame = pd.DataFrame(rows, columns=["file", "species", "start_s", "end_s", "max_score"])
    return frame.sort_values(["file", "start_s", "species"], kind="stable").reset_index(drop=True)


def write_raven_table(path: Path, found: pd.DataFrame, max_frequency_hz: float, begin_file: str) -> None:
    """A Raven Pro selection table (tab-separated) of one recording's detections; ``begin_file`` names the recording."""
    table = pd.DataFrame(
        {
            "Selection": np.arange(1, len(found) + 1),
            "View": "Spectrogram 1",
            "Channel": 1,
            "Begin Time (s)": found["start_s"].to_numpy(),
            "End Time (s)": found["end_s"].to_numpy(),
            "Low Freq (Hz)": 0.0,
            "High Freq (Hz)": max_frequency_hz,
            "Begin File": begin_file,
            "Species": found["species"].to_numpy(),
            "Score": found["max_score"].round(4).to_numpy(),
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, sep="\t", index=False, float_format="%.6g")


def predict(
    checkpoint: str | Path,
    paths: list[str | Path],
    out_dir: str | Path | None = None,
    hop_s: float = 1.0,
    batch_size: int = 64,
    thresholds: float | str | Path | dict[str, float] = 0.5,
    precision: str = "fp32",
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
        precision: ``"fp32"``, or ``"bf16"`` (CPU autocast; scores within
            :data:`BF16_TOLERANCE` of fp32).
        parquet: also write ``scores.parquet`` (needs pyarrow).
        progress: show a progress bar.

    The table's ``attrs`` hold ``scored_audio_s`` and ``elapsed_s`` (the audio this call scored,
    recordings done before excluded, and the time it took) and ``failures`` (a count).
    """
    if hop_s <= 0 or batch_size < 1:
        raise Mix2Error(f"hop_s must be positive and batch_size at least 1 (got {hop_s}, {batch_size})")
    if shard is not None:
        check_shard(shard)
    checkpoint = resolve_checkpoint(checkpoint)
    trained = load_trained_model(checkpoint)
    if isinstance(thresholds, str) and thresholds == "checkpoint":
        thresholds = trained.thresholds if trained.thresholds is not None else 0.5
    per_class = thresholds_from(trained.classes, thresholds)
    listing = find_recordings(paths)
    recordings = listing if shard is None else [p for p in listing if shard_of(p, shard[1]) == shard[0]]
    window_s = trained.config.data.window_s
    sample_rate_hz = trained.config.features.sample_rate_hz
    classes_thresholds = dict(zip(trained.classes, per_class.tolist()))
    state = PredictState(Path(out_dir), checkpoint, hop_s, precision, classes_thresholds, shard) if out_dir else None
    done = state.done() if state else {}
    scorer = WindowScorer(trained, precision)

    parts: dict[int, pd.DataFrame] = {}
    failures: dict[int, str] = dict(state.failures(recordings)) if state else {}
    failures.update({i: NOT_UTF8 for i, path in enumerate(recordings) if not is_utf8(path)})
    todo = [i for i, path in enumerate(recordings) if str(path) not in done and i not in failures]
    started, audio_s = time.perf_counter(), 0.0
    bar = tqdm(total=len(todo), unit="file", desc="predict", disable=not progress)
    for index, (windows, scores) in _score_recordings(
        recordings, todo, scorer, window_s, sample_rate_hz, hop_s, batch_size, failures
    ):
        frame = pd.concat([_window_frame(recordings[index], windows), pd.DataFrame(scores, columns=trained.classes)], axis=1)
        audio_s += windows[-1].end_s
        if state:
            done[str(recordings[index])] = state.record(recordings[index], frame)
        else:
            parts[index] = frame
        bar.update(1)
    bar.close()
    elapsed = time.perf_counter() - started
    if state:  # every table is built from the parts on disk, so a resumed run gives the same table
        state.write_failures(recordings, failures)
        parts = {i: state.read_part(done[str(p)], trained.classes) for i, p in enumerate(recordings) if str(p) in done}
    columns = ["file", "start_s", "end_s", *trained.classes]
    scores_table = pd.concat([parts[i] for i in sorted(parts)], ignore_index=True) if parts else pd.DataFrame(columns=columns)
    found = detections(scores_table, per_class)
    if state:
        state.write_results(scores_table, found, recordings, failures, parquet, sample_rate_hz / 2)
        state.finish(listing, sample_rate_hz / 2)
    # What this call did, for the caller to report: the audio it scored and how long that took.
    scores_table.attrs.update(scored_audio_s=audio_s, elapsed_s=elapsed, failures=len(failures))
    return scores_table


def _window_frame(path: Path, windows: list[Window]) -> pd.DataFrame:
    return pd.DataFrame(
        {"file": [str(path)] * len(windows), "start_s": [w.start_s for w in windows], "end_s": [w.end_s for w in windows]}
    )


def _score_recordings(
    recordings: list[Path],
    todo: list[int],
    scorer: WindowScorer,
    window_s: float,
    sample_rate_hz: int,
    hop_s: float,
    batch_size: int,
    failures: dict[int, str],
) -> Iterator[tuple[int, tuple[list[Window], np.ndarray]]]:
    """Yield ``(recording index, (windows, scores))`` as each recording's last batch is scored.

    Batches are filled across recordings; a recording that fails while being read is dropped,
    its reason put in ``failures``, and the others go on.
    """
    pending: dict[int, list] = {}  # recording -> [windows, scores so far, all windows read]
    batch_audio: list[np.ndarray] = []
    batch_owner: list[int] = []

    def score_batch() -> None:
        if batch_audio:
            # Every call sees a full batch (the last one padded with silence), so a window's score
            # never depends on how many windows shared its batch: a resumed run scores as one.
            padding = [np.zeros_like(batch_audio[0])] * (batch_size - len(batch_audio))
            scores = scorer(torch.from_numpy(np.stack(batch_audio + padding)))[: len(batch_audio)]
            for owner, row in zip(batch_owner, scores):
                if owner in pending:
                    pending[owner][1].append(row)
            batch_audio.clear()
            batch_owner.clear()

    def finished() -> Iterator[tuple[int, tuple[list[Window], np.ndarray]]]:
        for owner in [k for k, v in pending.items() if v[2] and len(v[1]) == len(v[0])]:
            windows, rows, _ = pending.pop(owner)
            yield owner, (windows, np.array(rows).reshape(len(windows), -1))

    for index in todo:
        path = recordings[index]
        try:
            length_s = duration_s(path)
            if length_s == 0:
                raise input_error(path, "the audio file holds no samples")
            windows = [Window(s, e) for s, e in recording_windows(length_s, window_s, hop_s)]
            pending[index] = [windows, [], False]
            for clip in read_windows(path, windows, window_s, sample_rate_hz):
                batch_audio.append(clip)
                batch_owner.append(index)
                if len(batch_audio) == batch_size:
                    score_batch()
                    yield from finished()
            pending[index][2] = True
        except Mix2Error as err:
            failures[index] = str(err).removeprefix(f"{path}: ")
            pending.pop(index, None)
            keep = [k for k, owner in enumerate(batch_owner) if owner != index]
            batch_audio[:] = [batch_audio[k] for k in keep]
            batch_owner[:] = [batch_owner[k] for k in keep]
            continue
        yield from finished()  # a recording whose windows are all scored already
    score_batch()
    yield from finished()


class PredictState:
    """The output folder of a resumable prediction (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        checkpoint: str | Path,
        hop_s: float,
        precision: str,
        thresholds: dict[str, float],
        shard: tuple[int, int] | None = None,
    ) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "parts").mkdir(exist_ok=True)
        shard_text = None if shard is None else f"{shard[0]}/{shard[1]}"
        settings = {
            "checkpoint_md5": md5sum(checkpoint),
            "hop_s": hop_s,
            "precision": precision,
            "shard": shard_text,
            "thresholds": thresholds,
        }
        settings_path = folder / "predict.json"
        if settings_path.is_file():
            stored = json.loads(settings_path.read_text())
            if {k: stored.get(k) for k in settings} != settings:
                changed = ", ".join(k for k in settings if stored.get(k) != settings[k])
                raise input_error(
                    settings_path, f"this folder holds a prediction with other settings ({changed}); use a new folder"
                )
        else:
            _write_text(settings_path, json.dumps({**settings, "checkpoint": str(checkpoint)}, indent=2))

    def done(self) -> dict[str, str]:
        """Recording path -> its part file, for every recording finished before."""
        done_path = self.folder / "done.jsonl"
        finished = {}
        if done_path.is_file():
            for line in done_path.read_text().splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that recording is redone
                    continue
                if (self.folder / "parts" / entry["part"]).is_file():
                    finished[entry["file"]] = entry["part"]
        return finished

    def failures(self, recordings: list[Path]) -> list[tuple[int, str]]:
        """Failures recorded before, for the recordings still asked for (they are not retried)."""
        path = self.folder / "failures.csv"
        if not path.is_file():
            return []
        known = dict(pd.read_csv(path, dtype=str, keep_default_na=False).itertuples(index=False, name=None))
        return [(i, known[printable(p)]) for i, p in enumerate(recordings) if printable(p) in known]

    def record(self, path: Path, frame: pd.DataFrame) -> str:
        """Write one recording's scores atomically, then list it in ``done.jsonl``; returns the part's name."""
        part = hashlib.sha1(str(path).encode()).hexdigest()[:16] + ".csv"
        _write_text(self.folder / "parts" / part, frame.to_csv(index=False, float_format="%.6f"))
        with (self.folder / "done.jsonl").open("a") as done:
            done.write(json.dumps({"file": str(path), "part": part}) + "\n")
            done.flush()
            os.fsync(done.fileno())
        return part

    def read_part(self, part: str, classes: list[str]) -> pd.DataFrame:
        frame = pd.read_csv(self.folder / "parts" / part, dtype={"file": str})
        return frame[["file", "start_s", "end_s", *classes]]

    def write_failures(self, recordings: list[Path], failures: dict[int, str]) -> None:
        rows = [(printable(recordings[i]), reason) for i, reason in sorted(failures.items())]
        _write_text(self.folder / "failures.csv", pd.DataFrame(rows, columns=["file", "reason"]).to_csv(index=False))

    def write_results(
        self,
        scores: pd.DataFrame,
        found: pd.DataFrame,
        recordings: list[Path],
        failures: dict[int, str],
        parquet: bool,
        max_frequency_hz: float,
    ) -> None:
        _write_text(self.folder / "scores.csv", scores.to_csv(index=False, float_format="%.6f"))
        _write_text(self.folder / "detections.csv", found.to_csv(index=False, float_format="%.6f"))
        if parquet:
            _write_parquet(self.folder / "scores.parquet", scores)
        readable = [path for i, path in enumerate(recordings) if i not in failures]
        write_raven_tables(self.folder / "raven", found, readable, max_frequency_hz)

    def finish(self, listing: list[Path], max_frequency_hz: float) -> None:
        """Record in ``predict.json`` that the job finished, over which listing."""
        settings_path = self.folder / "predict.json"
        record = json.loads(settings_path.read_text())
        record.update(finished=True, listing_sha1=listing_digest(listing), listed=len(listing), max_frequency_hz=max_frequency_hz)
        _write_text(settings_path, json.dumps(record, indent=2))


def write_raven_tables(folder: Path, found: pd.DataFrame, recordings: list[Path], max_frequency_hz: float) -> None:
    """One Raven selection table per recording of ``recordings`` (empty where it has no detection).

    Each table's ``Begin File`` is the recording's path under the folder that holds them all,
    so that same-named recordings of different sites stay apart (``site1/0001.wav``).
    """
    names = _raven_names(recordings)
    by_file = dict(tuple(found.groupby("file", sort=False)))
    begin_files = relative_paths(recordings)
    for name, path, begin_file in zip(names, recordings, begin_files):
        write_raven_table(folder / name, by_file.get(str(path), found.iloc[:0]), max_frequency_hz, begin_file)


def relative_paths(recordings: list[Path]) -> list[str]:
    """Each recording's path under the deepest folder that holds them all (its name, for one recording)."""
    if not recordings:
        return []
    absolute = [os.path.abspath(p) for p in recordings]
    base = os.path.commonpath([os.path.dirname(p) for p in absolute])
    return [Path(os.path.relpath(p, base)).as_posix() for p in absolute]


def _path_bytes(path: Path) -> bytes:
    return str(path).encode("utf-8", "surrogateescape")  # names that are not UTF-8 keep their bytes


def shard_of(path: Path, shards: int) -> int:
    """The shard (1 to ``shards``) of a recording: a hash of its path as listed, the same in every job.

    Example:
        >>> shard_of(Path("site1/20240101_0000.wav"), 4) == shard_of(Path("site1/20240101_0000.wav"), 4)
        True
    """
    return int(hashlib.sha1(_path_bytes(path)).hexdigest()[:16], 16) % shards + 1


def check_shard(shard: tuple[int, int]) -> tuple[int, int]:
    """``shard`` as ``(i, n)`` if ``1 <= i <= n``, else a one-line error."""
    index, shards = shard
    if not (isinstance(index, int) and isinstance(shards, int) and 1 <= index <= shards):
        raise Mix2Error(f"a shard is I/N with 1 <= I <= N, got {index}/{shards}")
    return shard


def parse_shard(text: str) -> tuple[int, int]:
    """``"3/10"`` -> ``(3, 10)``; anything else is a one-line error.

    Example:
        >>> parse_shard("3/10")
        (3, 10)
    """
    index, _, shards = text.partition("/")
    if not (index.strip().isdigit() and shards.strip().isdigit()):
        raise Mix2Error(f"--shard takes I/N, e.g. 3/10 (shard 3 of 10), got '{text}'")
    return check_shard((int(index), int(shards)))


def listing_digest(listing: list[Path]) -> str:
    """A digest of the recordings a prediction listed, in order: jobs that list alike have equal digests."""
    digest = hashlib.sha1()
    for path in listing:
        digest.update(_path_bytes(path) + b"\n")
    return digest.hexdigest()


MERGED_SETTINGS = ("checkpoint_md5", "hop_s", "precision", "listing_sha1", "listed", "thresholds")
"""What every shard of one prediction must share."""


def merge_predictions(folders: list[str | Path], out_dir: str | Path, parquet: bool = False) -> pd.DataFrame:
    """Join the output folders of the ``n`` shards of one prediction into ``out_dir``; returns the score table.

    Every folder must hold a finished shard, of one checkpoint, settings and listing, and the
    shards must be 1 to ``n``, each once; together they must cover every recording listed
    exactly once (scored or failed). ``out_dir`` gets ``scores.csv`` (rows by recording, then
    window start), ``detections.csv``, ``failures.csv``, ``raven/`` and ``predict.json``, as
    one unsharded prediction writes them.
    """
    if not folders:
        raise Mix2Error("merge needs the output folders of the shards of one prediction")
    records = [_finished_shard(Path(folder)) for folder in folders]
    first = records[0]
    for folder, record in zip(folders, records):
        differing = [key for key in MERGED_SETTINGS if record.get(key) != first.get(key)]
        if differing:
            raise input_error(folder, f"is not a shard of the same prediction as {folders[0]} ({', '.join(differing)} differ)")
    shards = [tuple(map(int, record["shard"].split("/"))) for record in records]
    count = shards[0][1]
    indices = [index for index, total in shards if total == count]
    if len(indices) != len(shards) or sorted(indices) != list(range(1, count + 1)):
        missing = sorted(set(range(1, count + 1)) - set(indices))
        repeated = sorted({i for i in indices if indices.count(i) > 1})
        raise Mix2Error(
            f"merge needs shards 1 to {count} of one prediction, each once"
            + (f"; missing {', '.join(map(str, missing))}" if missing else "")
            + (f"; given twice {', '.join(map(str, repeated))}" if repeated else "")
        )
    scores = pd.concat([pd.read_csv(Path(f) / "scores.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    found = pd.concat([pd.read_csv(Path(f) / "detections.csv", dtype={"file": str}) for f in folders], ignore_index=True)
    failed = pd.concat([pd.read_csv(Path(f) / "failures.csv", dtype=str, keep_default_na=False) for f in folders])
    files = sorted(scores["file"].unique(), key=Path)
    covered = len(files) + len(failed)
    if covered != first["listed"] or failed["file"].isin(files).any():
        raise Mix2Error(f"the {count} shards cover {covered} recordings, not the {first['listed']} listed once each")
    order = {file: i for i, file in enumerate(files)}
    scores = scores.sort_values("file", key=lambda column: column.map(order), kind="stable").reset_index(drop=True)
    found = found.sort_values(["file", "start_s", "species"], kind="stable").reset_index(drop=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _write_text(out / "scores.csv", scores.to_csv(index=False, float_format="%.6f"))
    _write_text(out / "detections.csv", found.to_csv(index=False, float_format="%.6f"))
    _write_text(out / "failures.csv", failed.to_csv(index=False))
    if parquet:
        _write_parquet(out / "scores.parquet", scores)
    write_raven_tables(out / "raven", found, [Path(f) for f in files], first["max_frequency_hz"])
    merged = {key: first[key] for key in ("checkpoint", *MERGED_SETTINGS, "max_frequency_hz")}
    _write_text(out / "predict.json", json.dumps({**merged, "merged": [str(f) for f in folders], "finished": True}, indent=2))
    return scores


def _finished_shard(folder: Path) -> dict:
    """The ``predict.json`` of a finished shard's output folder, or a one-line error."""
    record_path = folder / "predict.json"
    if not record_path.is_file():
        raise input_error(folder, "not an output folder of mix2 predict (it has no predict.json)")
    record = json.loads(record_path.read_text())
    if record.get("shard") is None:
        raise input_error(folder, "holds a prediction that was not sharded (mix2 predict --shard I/N); there is nothing to merge")
    if not record.get("finished"):
        raise input_error(folder, f"shard {record['shard']} has not finished; run its job again, and it goes on where it stopped")
    return record


def _raven_names(recordings: list[Path]) -> list[str]:
    """``<stem>.selections.txt`` per recording; where stems repeat, ``<stem>-1``, ``<stem>-2``, ..."""
    stems = [p.stem for p in recordings]
    seen: dict[str, int] = {}
    names = []
    for stem in stems:
        seen[stem] = seen.get(stem, 0) + 1
        names.append(f"{stem}-{seen[stem]}.selections.txt" if stems.count(stem) > 1 else f"{stem}.selections.txt")
    return names


def _write_parquet(path: Path, scores: pd.DataFrame) -> None:
    try:
        scores.to_parquet(path, index=False)
    except ImportError:
        raise Mix2Error("writing Parquet needs pyarrow: pip install pyarrow") from None


def _write_text(path: Path, text: str) -> None:
    with atomic_path(path) as partial:
        partial.write_text(text)


__all__ = [
    "BF16_TOLERANCE",
    "WindowScorer",
    "detections",
    "find_recordings",
    "merge_predictions",
    "parse_shard",
    "predict",
    "recording_windows",
    "shard_of",
    "thresholds_from",
]
