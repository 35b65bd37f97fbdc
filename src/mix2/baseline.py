"""A simple baseline to hold the network against: log-mel statistics and logistic regression.

Each clip becomes ``2 * n_mels`` numbers, the mean and the standard deviation of every mel
band's dB values over time (256 for 128 mels), standardised on the training clips; one
logistic regression per class (scikit-learn's defaults, ``C=1``, with
``class_weight="balanced"``) scores it. Nothing is tuned: on small validation splits a choice of
``C`` is mostly noise (on the demonstration chorus every ``C`` from 0.1 to 10 ranks the
validation clips perfectly). It fits in seconds, and it tells whether the deep model learned
more than the spectrum's average shape.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> features = rng.normal(size=(40, 4, 10))
    >>> features[:20, 0] += 3  # class 0 is loud in band 0
    >>> x, labels = band_statistics(features), np.repeat([[1], [0]], 20, axis=0)
    >>> model = fit_baseline(x[::2], labels[::2])
    >>> scores = model.predict_proba(x[1::2])[:, 0]  # the loud clips score above all the others
    >>> bool(scores[:10].min() > scores[10:].max())
    True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def band_statistics(features: np.ndarray) -> np.ndarray:
    """``(clips, mels, frames)`` log-mel dB -> ``(clips, 2 * mels)``: each band's mean over time, then its standard deviation."""
    features = np.asarray(features, dtype=np.float64)
    return np.concatenate([features.mean(axis=2), features.std(axis=2)], axis=1)


@dataclass
class Baseline:
    """A fitted baseline: the scaler, and one regression per class (``None`` where a class had one label value)."""

    scaler: StandardScaler
    regressions: list[LogisticRegression | None]
    constants: np.ndarray

    def predict_proba(self, statistics: np.ndarray) -> np.ndarray:
        """``(clips, 2 * mels)`` :func:`band_statistics` -> ``(clips, classes)`` probabilities."""
        x = self.scaler.transform(statistics)
        columns = [
            np.full(len(x), constant) if model is None else model.predict_proba(x)[:, 1]
            for model, constant in zip(self.regressions, self.constants)
        ]
        return np.stack(columns, axis=1)


def fit_baseline(statistics: np.ndarray, labels: np.ndarray, seed: int = 0) -> Baseline:
    """Fit the baseline on ``(clips, 2 * mels)`` :func:`band_statistics` and ``(clips, classes)`` 0/1 labels.

    A class whose label never varies (no positive, or no negative) gets a constant score, its
    share of positives.
    """
    labels = np.asarray(labels).astype(int)
    scaler = StandardScaler().fit(statistics)
    x = scaler.transform(statistics)
    regressions: list[LogisticRegression | None] = []
    for column in labels.T:
        if column.min() == column.max():
            regressions.append(None)
            continue
        model = LogisticRegression(class_weight="balanced", max_iter=1000, random_state=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            regressions.append(model.fit(x, column))
    return Baseline(scaler, regressions, labels.mean(axis=0).astype(np.float64))


__all__ = ["Baseline", "band_statistics", "fit_baseline"]
