import numpy as np
import pandas as pd
import pytest

from mix2.data.chorus import INVENTED_SPECIES, background_noise, synthesize_call, write_chorus
from mix2.data.events import read_events_folder


def test_chorus_is_seeded_long_tailed_polyphonic_and_a_third_empty(tmp_path):
    folder = write_chorus(tmp_path, seed=0, n_recordings=60)
    table = read_events_folder(folder)
    counts = table.class_counts()
    assert table.classes == [s.name for s in INVENTED_SPECIES] and len(table) == 600
    assert counts[0] > 0.3 * len(table) and (counts < 0.1 * len(table)).sum() >= 7  # a few common, most rare
    assert 0.25 < (table.labels.sum(axis=1) == 0).mean() < 0.4
    assert table.labels.sum(axis=1).max() >= 3
    again = write_chorus(tmp_path / "again", seed=0, n_recordings=60)
    assert (folder / "annotations.csv").read_text() == (again / "annotations.csv").read_text()
    other = pd.read_csv(write_chorus(tmp_path, seed=1, n_recordings=60) / "annotations.csv")
    assert not other.equals(pd.read_csv(folder / "annotations.csv"))


def test_calls_are_distinct_in_frequency():
    rng = np.random.default_rng(0)
    peaks = []
    for species in INVENTED_SPECIES:
        call = synthesize_call(species, rng)
        spectrum = np.abs(np.fft.rfft(call))
        peaks.append(np.argmax(spectrum) * 16_000 / len(call))
    assert len({round(p / 150) for p in peaks}) == len(INVENTED_SPECIES)


def test_background_noise_has_no_rumble():
    noise = background_noise(16_000, np.random.default_rng(0))
    spectrum = np.abs(np.fft.rfft(noise))
    assert noise.std() == pytest.approx(1.0)
    assert spectrum[:50].max() < 1e-9
