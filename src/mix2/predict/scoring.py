"""Windows of audio -> probabilities, batches filled across recordings."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from mix2.config import pick_device
from mix2.data.audio import duration_s, read_blocks, read_windows
from mix2.engines import Engine, load_engine
from mix2.errors import Mix2Error, input_error
from mix2.features.frontend import FrontEnd
from mix2.inference import TrainedModel
from mix2.predict.windows import Window, recording_windows

FRONT_END_BATCH = 64
"""Windows transformed together where each is transformed alone (``exact``): one batched log-mel call."""


class WindowScorer:
    """Audio windows ``(batch, samples)`` at the model's rate -> probabilities ``(batch, classes)``.

    The checkpoint's front-end (:class:`~mix2.features.frontend.FrontEnd`: the log-mel rounded
    to float16 as the training cache stores it, then scaled per clip) on ``device`` (default:
    the GPU where there is one, else the CPU), then the network behind an inference ``engine``
    (:func:`~mix2.engines.load_engine`: ``auto``, ``torch``, ``onnxruntime`` or ``openvino``),
    with batch norm folded, in ``precision`` (``fp32``, ``bf16`` or ``int8``; see :mod:`mix2.engines`).

    With ``embedding``, it gives each window's embedding ``(batch, 960)`` instead, from the same
    engines (the exported network up to its embedding) in fp32 or bf16.
    """

    def __init__(
        self,
        trained: TrainedModel,
        checkpoint: str | Path,
        precision: str = "fp32",
        engine: str = "auto",
        device: torch.device | str | None = None,
        embedding: bool = False,
    ) -> None:
        device = torch.device(device) if device is not None else pick_device()
        stop = "embedding" if embedding else "logits"
        self.engine: Engine = load_engine(trained, checkpoint, engine, device, precision, stop)
        self.embedding = embedding
        self.frontend = FrontEnd(trained.config.features, device)

    @torch.inference_mode()
    def __call__(self, audio: torch.Tensor) -> np.ndarray:
        """``(batch, samples)`` audio, each window transformed alone -> probabilities ``(batch, classes)`` (or embeddings)."""
        return self.scores(self.frontend(audio))

    @torch.inference_mode()
    def scores(self, features: torch.Tensor) -> np.ndarray:
        """The network's input ``(batch, 1, mels, frames)`` -> probabilities ``(batch, classes)``, or with
        ``embedding`` the embeddings ``(batch, 960)``."""
        outputs = self.engine(features)
        return (outputs if self.embedding else torch.sigmoid(outputs)).numpy()

    def cuts_from_blocks(self, hop_s: float) -> bool:
        """Whether windows ``hop_s`` apart can be cut from one log-mel of their block (see :func:`cuts_from_blocks`)."""
        return cuts_from_blocks(hop_s, self.frontend.sample_rate_hz, self.frontend.hop_length)

    @torch.inference_mode()
    def window_features(self, path: Path, starts_s: list[float], window_s: float, exact: bool = False) -> Iterator[torch.Tensor]:
        """The network's input ``(1, mels, frames)`` of each window of ``path`` starting at ``starts_s``, in order.

        By default the log-mel is computed once per block of audio and each window's frames are cut
        from it (:meth:`~mix2.features.frontend.FrontEnd.windows_of_block`; the starts must then
        lie a whole number of the front-end's hops apart, see :meth:`cuts_from_blocks`); with
        ``exact``, each window is read and transformed alone, as the feature cache does for
        training and evaluation.
        """
        sample_rate_hz = self.frontend.sample_rate_hz
        window_samples = round(window_s * sample_rate_hz)
        if exact:
            clips = read_windows(path, starts_s, window_s, sample_rate_hz)
            while chunk := list(itertools.islice(clips, FRONT_END_BATCH)):
                yield from self.frontend(torch.from_numpy(np.stack(chunk)))
            return
        for block, audio in read_blocks(path, starts_s, window_s, sample_rate_hz):
            offsets = [round((start_s - block[0]) * sample_rate_hz) for start_s in block]
            yield from self.frontend.windows_of_block(torch.from_numpy(audio), offsets, window_samples)


def cuts_from_blocks(hop_s: float, sample_rate_hz: int, hop_length: int) -> bool:
    """Whether windows ``hop_s`` apart start on the front-end's frames, so that they can be cut from one log-mel.

    Example:
        >>> cuts_from_blocks(1.0, 16_000, 128), cuts_from_blocks(0.5, 16_000, 128)
        (True, False)
    """
    samples = hop_s * sample_rate_hz
    return abs(samples - round(samples)) < 1e-6 and round(samples) % hop_length == 0


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
    hop_s: float,
    batch_size: int,
    failures: dict[int, str],
    exact: bool = False,
) -> Iterator[tuple[int, tuple[list[Window], np.ndarray]]]:
    """Yield ``(recording index, (windows, scores))`` as each recording's last batch is scored.

    Batches are filled across recordings; a recording that fails while being read is dropped,
    its reason put in ``failures``, and the others go on. ``exact`` as :meth:`WindowScorer.window_features`'
    (it must be set where :meth:`WindowScorer.cuts_from_blocks` is false for ``hop_s``).
    """
    pending: dict[int, _Recording] = {}
    batch_features: list[torch.Tensor] = []
    batch_owner: list[int] = []
    # Every call sees a full batch (the last one padded with silence), so a window's score
    # never depends on how many windows shared its batch: a resumed run scores as one.
    silence = scorer.frontend(torch.zeros(1, round(window_s * scorer.frontend.sample_rate_hz)))[0]

    def score_batch() -> None:
        if batch_features:
            padding = [silence] * (batch_size - len(batch_features))
            scores = scorer.scores(torch.stack(batch_features + padding))[: len(batch_features)]
            for owner, row in zip(batch_owner, scores):
                if owner in pending:
                    pending[owner].scores.append(row)
            batch_features.clear()
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
            for features in scorer.window_features(path, [window.start_s for window in windows], window_s, exact):
                batch_features.append(features)
                batch_owner.append(index)
                if len(batch_features) == batch_size:
                    score_batch()
                    yield from finished()
            pending[index].all_read = True
        except Mix2Error as err:
            failures[index] = str(err).removeprefix(f"{path}: ")
            pending.pop(index, None)
            keep = [k for k, owner in enumerate(batch_owner) if owner != index]
            batch_features[:] = [batch_features[k] for k in keep]
            batch_owner[:] = [batch_owner[k] for k in keep]
            continue
        yield from finished()  # a recording whose windows are all scored already
    score_batch()
    yield from finished()
