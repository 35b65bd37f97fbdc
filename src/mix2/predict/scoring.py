"""Windows of audio -> probabilities, batches filled across recordings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mix2.config import pick_device
from mix2.data.audio import duration_s, read_windows
from mix2.engines import load_engine
from mix2.errors import Mix2Error, input_error
from mix2.features.frontend import FrontEnd
from mix2.inference import TrainedModel
from mix2.predict.windows import Window, recording_windows


class WindowScorer:
    """Audio windows ``(batch, samples)`` at the model's rate -> probabilities ``(batch, classes)``.

    The checkpoint's front-end (:class:`~mix2.features.frontend.FrontEnd`: the log-mel rounded
    to float16 as the training cache stores it, then scaled per clip) on ``device`` (default:
    the GPU where there is one, else the CPU), then the network behind an inference ``engine``
    (:func:`~mix2.engines.load_engine`: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``),
    in fp32 with batch norm folded, or (``precision="bf16"``, PyTorch only) under autocast to bfloat16.
    """

    def __init__(
        self,
        trained: TrainedModel,
        checkpoint: str | Path,
        precision: str = "fp32",
        engine: str = "auto",
        device: torch.device | str | None = None,
    ) -> None:
        device = torch.device(device) if device is not None else pick_device()
        self.engine = load_engine(trained, checkpoint, engine, device, precision)
        self.frontend = FrontEnd(trained.config.features, device)

    @torch.inference_mode()
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        return torch.sigmoid(self.engine(self.frontend(audio))).numpy()


def window_frame(path: Path, windows: list[Window]) -> pd.DataFrame:
    return pd.DataFrame(
        {"file": [str(path)] * len(windows), "start_s": [w.start_s for w in windows], "end_s": [w.end_s for w in windows]}
    )


@dataclass
class _Recording:
    """A recording being scored: its windows, the score rows so far, and whether all its windows were read."""

    windows: list[Window]
    scores: list[np.ndarray] = field(default_factory=list)
    all_read: bool = False

    @property
    def done(self) -> bool:
        return self.all_read and len(self.scores) == len(self.windows)


def score_recordings(
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
    pending: dict[int, _Recording] = {}
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
                    pending[owner].scores.append(row)
            batch_audio.clear()
            batch_owner.clear()

    def finished() -> Iterator[tuple[int, tuple[list[Window], np.ndarray]]]:
        for owner in [k for k, recording in pending.items() if recording.done]:
            recording = pending.pop(owner)
            yield owner, (recording.windows, np.array(recording.scores).reshape(len(recording.windows), -1))

    for index in todo:
        path = recordings[index]
        try:
            length_s = duration_s(path)
            if length_s == 0:
                raise input_error(path, "the audio file holds no samples")
            windows = [Window(s, e) for s, e in recording_windows(length_s, window_s, hop_s)]
            pending[index] = _Recording(windows)
            for clip in read_windows(path, [window.start_s for window in windows], window_s, sample_rate_hz):
                batch_audio.append(clip)
                batch_owner.append(index)
                if len(batch_audio) == batch_size:
                    score_batch()
                    yield from finished()
            pending[index].all_read = True
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
