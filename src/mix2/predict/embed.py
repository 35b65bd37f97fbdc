"""Embed: the network's embedding of every window of long recordings, for users' own analyses.

``embed(checkpoint, paths, out_dir)`` cuts the recordings into the same windows as
:func:`~mix2.predict.predict` (the checkpoint's window, every ``hop_s``, the last one padded),
reads and transforms them the same way, and keeps the trained network's pooled embedding of
each (960 numbers for MobileNetV3-Large: the vector its classifier reads) instead of its scores:
for clustering, search, or a classifier of one's own, as users do with Perch and BirdNET
embeddings. It runs in fp32 on predict's engines (:mod:`mix2.engines`: ``auto`` takes the
fastest installed), each exporting the network up to its embedding.

With ``out_dir``, the job resumes where it stopped, as ``predict`` does:

- ``embeddings.npy``: ``(windows, dim)`` float32, row ``i`` the window of row ``i`` of
  ``windows.csv``; written a recording at a time into a memory map, so memory stays bounded
  however long the archive (``np.load(path, mmap_mode="r")`` reads it the same way);
- ``windows.csv``: ``file, start_s, end_s``;
- ``embeddings.parquet`` (with ``parquet=True``, needs pyarrow): ``file, start_s, end_s,
  emb_000 ... emb_959``, one row group per recording;
- ``failures.csv``: recordings that could not be read, with the reason;
- ``parts/``, ``done.jsonl`` and ``embed.json``: one ``.npz`` per finished recording, recorded
  atomically, and the settings (the checkpoint's digest, the hop, the engine, how windows were
  cut, the shard), so that a re-run goes on where a kill stopped it and a re-run with other settings is
  refused.

Large archives split over ``N`` jobs as predict's do: ``shard=(i, n)`` embeds only shard ``i``'s
recordings, and :func:`~mix2.predict.merge.merge_embeddings` (``mix2 merge``) joins the ``n``
folders into the one an unsharded job writes.

Example:
    >>> windows, vectors = embed("runs/nips4b-.../checkpoints/best.ckpt", ["recordings/"], "embeddings")  # doctest: +SKIP
    >>> vectors.shape, list(windows.columns)  # doctest: +SKIP
    ((5412, 960), ['file', 'start_s', 'end_s'])
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from mix2.files import atomic_path
from mix2.predict.job import JobSetup, run_recordings
from mix2.predict.output import JobFolder, job_settings, pyarrow_module, write_text
from mix2.predict.scoring import WindowScorer, window_frame
from mix2.predict.windows import Window

COLUMN = "emb_{:03d}"
"""The name of embedding dimension ``i`` in ``embeddings.parquet``."""


class EmbedState(JobFolder):
    """The output folder of a resumable embedding job (see the module docstring), settings in ``embed.json``."""

    def __init__(
        self,
        folder: Path,
        checkpoint: str | Path,
        hop_s: float,
        engine: str,
        windows: str,
        shard: tuple[int, int] | None = None,
    ) -> None:
        settings = job_settings(checkpoint, hop_s, shard, engine=engine, windows=windows)
        # Folders written before embed had engines were embedded by PyTorch.
        super().__init__(folder, "embed.json", settings, {"checkpoint": str(checkpoint)}, "embeddings", {"engine": "torch"})

    def record(self, path: Path, windows: list[Window], vectors: np.ndarray) -> str:
        """Write one recording's windows and embeddings atomically, then list it in ``done.jsonl``."""

        def write(file: Path) -> None:
            with file.open("wb") as handle:  # a handle: np.savez would add ".npz" to the partial's name
                starts, ends = [w.start_s for w in windows], [w.end_s for w in windows]
                np.savez(handle, start_s=np.array(starts), end_s=np.array(ends), embedding=vectors.astype(np.float32))

        return self.record_part(path, ".npz", write)


def embed(
    checkpoint: str | Path,
    paths: list[str | Path],
    out_dir: str | Path | None = None,
    hop_s: float = 1.0,
    batch_size: int = 64,
    engine: str = "auto",
    exact_windows: bool = False,
    parquet: bool = False,
    progress: bool = True,
    shard: tuple[int, int] | None = None,
) -> tuple[pd.DataFrame, np.ndarray]:
    """The embedding of every window of every recording in ``paths``: ``(windows, embeddings)``.

    Args:
        checkpoint: a ``.ckpt`` written by ``mix2 train``, or a run folder (its ``checkpoints/best.ckpt``).
        paths: audio files, or folders searched recursively.
        out_dir: where to write the files of the module docstring; ``None`` writes nothing.
        hop_s, batch_size, engine, exact_windows: as :func:`~mix2.predict.predict`'s; every
            batch is padded to ``batch_size``, so a window's embedding does not depend on which
            windows shared its batch (another ``batch_size`` or engine moves it by float rounding only).
        parquet: also write ``embeddings.parquet`` (needs pyarrow).
        progress: show a progress bar.
        shard: ``(i, n)``: embed only the recordings of shard ``i`` of ``n`` (as predict's ``shard``).

    Returns:
        ``windows``, a table of ``file, start_s, end_s``, and ``embeddings``, ``(windows, dim)``
        float32 in the same order (with ``out_dir``, a read-only memory map of ``embeddings.npy``).
        The table's ``attrs`` hold ``scored_audio_s``, ``elapsed_s`` and ``failures`` as ``predict``'s.
    """
    if parquet:
        pyarrow_module()
    setup = JobSetup.of(checkpoint, paths, hop_s, batch_size, shard)
    scorer = WindowScorer(setup.trained, setup.checkpoint, engine=engine, embedding=True)
    exact = exact_windows or not scorer.cuts_from_blocks(hop_s)
    dim = setup.trained.network.classifier.in_features  # the embedding the classifier reads
    windows_cut = "exact" if exact else "block"
    state = EmbedState(Path(out_dir), setup.checkpoint, hop_s, scorer.engine.name, windows_cut, shard) if out_dir else None
    parts: dict[int, tuple[pd.DataFrame, np.ndarray]] = {}

    def keep(index: int, windows: list[Window], vectors: np.ndarray) -> None:
        if state:
            state.record(setup.recordings[index], windows, vectors)
        else:
            parts[index] = (window_frame(setup.recordings[index], windows), vectors.astype(np.float32))

    run = run_recordings(setup, scorer, state, exact, keep, progress, "embed")
    if state is None:
        found = [parts[i] for i in sorted(parts)]
        table = pd.concat([t for t, _ in found], ignore_index=True) if found else _empty_windows()
        vectors = np.concatenate([v for _, v in found]) if found else np.zeros((0, dim), np.float32)
    else:
        state.write_failures(setup.recordings, run.failures)
        table, vectors = _write_results(state, setup.recordings, dim, parquet)
        state.finish(setup.listing, dim=dim)
    table.attrs.update(scored_audio_s=run.audio_s, elapsed_s=run.elapsed_s, failures=len(run.failures))
    return table, vectors


def _write_results(state: EmbedState, recordings: list[Path], dim: int, parquet: bool) -> tuple[pd.DataFrame, np.ndarray]:
    """``windows.csv``, ``embeddings.npy`` (and ``.parquet``) from the parts on disk, a recording at a time."""
    done = state.done()
    finished = [p for p in recordings if str(p) in done]
    parts = [state.folder / "parts" / done[str(p)] for p in finished]
    frames = []
    for path, part in zip(finished, parts):
        with np.load(part) as stored:
            windows = [Window(float(s), float(e)) for s, e in zip(stored["start_s"], stored["end_s"])]
        frames.append(window_frame(path, windows))

    def vectors_of(index: int) -> np.ndarray:
        with np.load(parts[index]) as stored:
            return stored["embedding"]

    return write_embeddings(state.folder, frames, vectors_of, dim, parquet)


def write_embeddings(
    folder: Path, frames: list[pd.DataFrame], vectors_of: Callable[[int], np.ndarray], dim: int, parquet: bool
) -> tuple[pd.DataFrame, np.ndarray]:
    """Write ``windows.csv``, ``embeddings.npy`` (and ``embeddings.parquet``) into ``folder``, atomically.

    ``frames``: each recording's windows table, in output order; ``vectors_of(i)`` reads
    recording ``i``'s ``(windows, dim)`` embeddings. They are read one recording at a time into
    a memory map, so memory stays bounded. Returns the table and a read-only memory map of
    ``embeddings.npy``.
    """
    table = pd.concat(frames, ignore_index=True) if frames else _empty_windows()
    write_text(folder / "windows.csv", table.to_csv(index=False))
    npy = folder / "embeddings.npy"
    writer = _ParquetRows(folder / "embeddings.parquet", dim) if parquet else None
    with atomic_path(npy) as partial:
        rows = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(len(table), dim))
        start = 0
        for index, frame in enumerate(frames):
            vectors = vectors_of(index)
            rows[start : start + len(vectors)] = vectors
            start += len(vectors)
            if writer is not None:
                writer.write(frame, vectors)
        rows.flush()
        del rows
    if writer is not None:
        writer.close()
    return table, np.load(npy, mmap_mode="r")


def _empty_windows() -> pd.DataFrame:
    return pd.DataFrame({"file": pd.Series(dtype=str), "start_s": pd.Series(dtype=float), "end_s": pd.Series(dtype=float)})


class _ParquetRows:
    """``embeddings.parquet`` written a recording's row group at a time, atomically once closed."""

    def __init__(self, path: Path, dim: int) -> None:
        pa = pyarrow_module()
        fields = [("file", pa.string()), ("start_s", pa.float64()), ("end_s", pa.float64())]
        fields += [(COLUMN.format(i), pa.float32()) for i in range(dim)]
        self.pa, self.path, self.schema = pa, path, pa.schema(fields)
        self.partial = path.with_name(path.name + ".partial")
        self.writer = pa.parquet.ParquetWriter(self.partial, self.schema)

    def write(self, frame: pd.DataFrame, vectors: np.ndarray) -> None:
        columns = [self.pa.array(frame[name]) for name in ("file", "start_s", "end_s")]
        columns += [self.pa.array(vectors[:, i]) for i in range(vectors.shape[1])]
        self.writer.write_table(self.pa.Table.from_arrays(columns, schema=self.schema))

    def close(self) -> None:
        self.writer.close()
        self.partial.replace(self.path)
