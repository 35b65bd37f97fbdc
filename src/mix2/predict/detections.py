"""Scores -> detections: per-class thresholds, and windows over them merged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mix2.data.events import TIME_TOLERANCE_S
from mix2.errors import Mix2Error, input_error

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
    given = f"thresholds '{thresholds}'" if isinstance(thresholds, (int, float, str, Path)) else "thresholds"
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
        raise Mix2Error(f"{given}: each threshold must lie between 0 and 1, got {value} for '{name}'")
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
