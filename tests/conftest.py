"""Shared fixtures: a private cache folder, small generated audio, and the shared recordings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(name: str) -> Path:
    """A folder of ``../shared/data``, or skip the test with a message saying what is missing."""
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"shared data {path} is absent: tests on real recordings need ../shared/data beside the repository")
    return path


def write_tone(
    path: Path, duration_s: float, sample_rate_hz: int = 16_000, frequency_hz: float = 1_000.0, channels: int = 1
) -> Path:
    """Write a sine tone (with a little noise) to ``path``; returns ``path``."""
    t = np.arange(int(duration_s * sample_rate_hz)) / sample_rate_hz
    rng = np.random.default_rng(int(frequency_hz))
    tone = 0.3 * np.sin(2 * np.pi * frequency_hz * t) + 0.01 * rng.normal(size=t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.repeat(tone[:, None], channels, axis=1), sample_rate_hz)
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """Every test gets the session's private cache, never the user's ``~/.cache/mix2``."""
    monkeypatch.setenv("MIX2_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))
