"""Shared fixtures: a private cache folder, small generated audio, the shared recordings and a checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from mix2 import default_config
from mix2.data.audio import fit_length, read_audio
from mix2.features.frontend import FrontEnd
from mix2.training import Classifier

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


FOUR_CLASSES = ["frog_a", "frog_b", "toad_c", "toad_d"]


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory):
    """An untrained four-class model whose batch-norm statistics are set on real audio, so that scores vary."""
    torch.manual_seed(0)
    module = Classifier(default_config("data").to_dict(), FOUR_CLASSES)
    soundscape = shared_data("frogs") / "rfcx_f97ababc1.flac"
    clips = np.stack([fit_length(read_audio(soundscape, 16_000, s, 3.0), 48_000) for s in range(0, 57, 3)])
    features = FrontEnd(module.config.features)(torch.from_numpy(clips))
    for layer in module.modules():
        if isinstance(layer, torch.nn.modules.batchnorm._BatchNorm):
            layer.momentum = None  # a plain average over the calibration batch
    module.train()
    with torch.no_grad():
        module(features)
    path = tmp_path_factory.mktemp("ckpt") / "model.ckpt"
    thresholds = {"frog_a": 0.5, "frog_b": 0.9, "toad_c": 0.3, "toad_d": 0.99}
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict(), "thresholds": thresholds}, path)
    return path
