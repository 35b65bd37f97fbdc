"""Predict: slide the training window over long recordings and say which species call when.

``predict(checkpoint, paths)`` finds the recordings (files, or folders searched recursively for
wav, flac, mp3 and ogg), cuts each into windows of the checkpoint's length (3 s) every ``hop_s``
(1 s), scores them in batches filled across recordings, and returns one row per window:
``file, start_s, end_s`` and one probability column per class.

Windows start at 0, ``hop_s``, ``2 hop_s``, ... as long as they fit in the recording. Where the
last full window ends before the recording does, one more window starts a hop later and covers
the tail: its audio is zero-padded to the window length, as training pads short clips, and its
``end_s`` is the recording's end. A recording shorter than one window gives one padded window.

Each window's audio is read by :func:`~mix2.data.audio.read_windows`, the reader the training
cache uses too: soundfile's partial reads, at most 2 minutes at a time, so memory stays bounded
on hours-long recordings, then each window mixed to mono and resampled with soxr alone. It goes
through the same front-end as the cache (:class:`~mix2.features.frontend.FrontEnd`), so a
window scores as the same clip scores in evaluation.

With ``out_dir`` the results are written there, and a re-run goes on where the last one stopped:

- ``scores.csv`` (and ``scores.parquet`` with ``parquet=True``): the window scores;
- ``detections.csv``: ``file, species, start_s, end_s, max_score``, windows over the species'
  threshold that overlap or touch merged into one detection;
- ``raven/<file>.selections.txt``: one Raven selection table per recording;
- ``failures.csv``: recordings that could not be read, with the reason; they are skipped;
- ``parts/`` and ``done.jsonl``: one score file per finished recording, recorded atomically;
  recordings already listed in ``done.jsonl`` are not scored again;
- ``predict.json``: the settings (the checkpoint's digest, the hop, the precision, the engine
  that ran the network, the shard and the per-class thresholds), so that a re-run with other
  settings is refused, and once the job has finished, what it covered (the listing's digest).

Large archives split over ``N`` independent jobs (a cluster's array job): ``shard=(i, n)``
scores only the recordings of shard ``i`` of ``n`` (:func:`shard_of`, from a hash of each
recording's path, so every recording falls in exactly one shard), and :func:`merge_predictions`
joins the ``n`` finished output folders into one, checking that they cover every recording of
one listing exactly once.

Example:
    >>> scores = predict("runs/chorus-.../checkpoints/best.ckpt", ["recordings/"])  # doctest: +SKIP
    >>> detections(scores, thresholds_from(scores.columns[3:], 0.5))  # doctest: +SKIP

The package, in the order the data flows: :mod:`~mix2.predict.windows` (recordings, their
windows, their audio in bounded blocks), :mod:`~mix2.predict.scoring` (audio -> probabilities),
:mod:`~mix2.predict.detections` (thresholds, detections), :mod:`~mix2.predict.output` (the
resumable output folder, Raven tables), :mod:`~mix2.predict.shards` and :mod:`~mix2.predict.merge` (sharding, and the shards joined) and
:mod:`~mix2.predict.job` (:func:`predict`, which runs them); :mod:`~mix2.predict.embed`
(:func:`embed`: each window's embedding instead of its scores).
"""

from mix2.engines import INFERENCE_PRECISIONS
from mix2.predict.detections import THRESHOLD_FORMS, detections, thresholds_from
from mix2.predict.embed import embed
from mix2.predict.job import predict
from mix2.predict.merge import merge_embeddings, merge_predictions, merge_shards
from mix2.predict.output import PredictState
from mix2.predict.scoring import WindowScorer
from mix2.predict.shards import parse_shard, shard_of
from mix2.predict.windows import find_recordings, recording_windows

__all__ = [
    "INFERENCE_PRECISIONS",
    "THRESHOLD_FORMS",
    "PredictState",
    "WindowScorer",
    "detections",
    "embed",
    "find_recordings",
    "merge_embeddings",
    "merge_predictions",
    "merge_shards",
    "parse_shard",
    "predict",
    "recording_windows",
    "shard_of",
    "thresholds_from",
]
