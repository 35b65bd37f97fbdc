"""The built-in default: a synthetic frog chorus generated from a seed.

Ten invented species, each with a distinct call (carrier frequency, pulse rate, call length and
frequency sweep), call in 12 s recordings over background noise. As real anurans do, a calling
bout is a series of calls repeated for 1.5 to 4 s. Their frequencies are long
tailed: a few species call in most recordings, most are rare. Several species often call at
once, and about a third of the 3 s windows hold no call at all.

The chorus is written once as an events folder (see :mod:`mix2.data.events`) under the cache
folder and read like any user's data, so it exercises the same path.

Example:
    >>> folder = write_chorus(tempfile.mkdtemp(), seed=0, n_recordings=2)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import soundfile as sf

SAMPLE_RATE_HZ = 16_000
RECORDING_S = 12.0
VERSION = 3  # bump whenever the synthesis changes, so cached choruses are not reused


@dataclass(frozen=True)
class Species:
    """One invented species and its call."""

    name: str
    carrier_hz: float
    pulse_rate_hz: float
    call_s: float
    sweep_hz: float
    bouts_per_recording: float


INVENTED_SPECIES = (
    Species("Boana_fictus", 1_800, 12, 0.8, 300, 0.87),
    Species("Dendropsophus_falsus", 4_200, 45, 0.4, -600, 0.35),
    Species("Leptodactylus_imago", 600, 0, 0.25, 350, 0.21),
    Species("Scinax_simulans", 3_000, 80, 1.2, 0, 0.145),
    Species("Physalaemus_umbra", 900, 4, 1.0, -500, 0.105),
    Species("Rhinella_phantasma", 1_300, 25, 2.0, 0, 0.087),
    Species("Adenomera_mimica", 5_200, 8, 0.3, 800, 0.07),
    Species("Pithecopus_larva", 2_400, 0, 0.15, -900, 0.058),
    Species("Elachistocleis_somnium", 3_600, 150, 1.5, 200, 0.049),
    Species("Sphaenorhynchus_echo", 6_500, 18, 0.6, -1_200, 0.043),
)


def synthesize_call(species: Species, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """One call of ``species``: a swept tone with a second harmonic, gated into pulses; ``(samples,)``."""
    length_s = species.call_s * rng.uniform(0.8, 1.2)
    t = np.arange(int(length_s * sample_rate_hz)) / sample_rate_hz
    carrier_hz = species.carrier_hz * rng.uniform(0.97, 1.03)
    frequency = carrier_hz + species.sweep_hz * t / length_s
    phase = 2 * np.pi * np.cumsum(frequency) / sample_rate_hz
    tone = np.sin(phase) + 0.3 * np.sin(2 * phase)
    pulses = np.sin(np.pi * species.pulse_rate_hz * t) ** 2 if species.pulse_rate_hz else 1.0
    fade = np.minimum(1.0, np.minimum(t, length_s - t) / 0.01)
    return (tone * pulses * fade).astype(np.float32)


def synthesize_bout(species: Species, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """A calling bout: calls of ``species`` repeated, with short gaps, for 1.5 to 4 s; ``(samples,)``."""
    target = int(rng.uniform(1.5, 4.0) * sample_rate_hz)
    pieces, length = [], 0
    while length < target:
        call = synthesize_call(species, rng, sample_rate_hz)
        gap = np.zeros(int(rng.uniform(0.1, 0.5) * sample_rate_hz), dtype=np.float32)
        pieces += [call, gap]
        length += len(call) + len(gap)
    return np.concatenate(pieces[:-1])


def background_noise(n_samples: int, rng: np.random.Generator, sample_rate_hz: int = SAMPLE_RATE_HZ) -> np.ndarray:
    """Pink-like noise of unit RMS: power falling as 1/f above 100 Hz, nothing below 50 Hz; ``(n_samples,)``."""
    spectrum = np.fft.rfft(rng.normal(size=n_samples))
    frequency_hz = np.fft.rfftfreq(n_samples, 1 / sample_rate_hz)
    spectrum *= np.where(frequency_hz < 50, 0.0, 1 / np.sqrt(np.maximum(frequency_hz, 100.0) / 100.0))
    noise = np.fft.irfft(spectrum, n_samples)
    return noise / noise.std()


def synthesize_recording(
    rng: np.random.Generator, duration_s: float = RECORDING_S, sample_rate_hz: int = SAMPLE_RATE_HZ
) -> tuple[np.ndarray, pd.DataFrame]:
    """One recording and its events (``start_s, end_s, label``), one event per calling bout."""
    n = int(duration_s * sample_rate_hz)
    audio = background_noise(n, rng, sample_rate_hz) * rng.uniform(0.01, 0.04)
    events = []
    for species in INVENTED_SPECIES:
        for _ in range(rng.poisson(species.bouts_per_recording)):
            bout = synthesize_bout(species, rng, sample_rate_hz)
            start = int(rng.uniform(0, n - len(bout)))
            audio[start : start + len(bout)] += bout * rng.uniform(0.05, 0.4)
            events.append((start / sample_rate_hz, (start + len(bout)) / sample_rate_hz, species.name))
    audio = audio / max(1.0, float(np.abs(audio).max()) / 0.95)
    return audio.astype(np.float32), pd.DataFrame(events, columns=["start_s", "end_s", "label"])


def write_chorus(folder: str | Path, seed: int = 0, n_recordings: int = 60) -> Path:
    """Write the chorus as an events folder at ``folder / chorus-v{VERSION}-seed{seed}-n{n_recordings}``.

    Written once: an existing complete folder is reused. Written to a temporary folder and
    renamed, so an interrupted write never leaves a half chorus.
    """
    target = Path(folder) / f"chorus-v{VERSION}-seed{seed}-n{n_recordings}"
    if (target / "annotations.csv").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".chorus-", dir=target.parent))
    rng = np.random.default_rng(seed)
    (staging / "audio").mkdir()
    recordings, events = [], []
    for i in range(n_recordings):
        audio, recording_events = synthesize_recording(rng)
        file = f"audio/chorus_{i:04d}.wav"
        sf.write(staging / file, audio, SAMPLE_RATE_HZ, subtype="PCM_16")
        recordings.append((file, RECORDING_S))
        events.append(recording_events.assign(file=file))
    pd.DataFrame(recordings, columns=["file", "duration_s"]).to_csv(staging / "recordings.csv", index=False)
    pd.DataFrame({"label": [s.name for s in INVENTED_SPECIES]}).to_csv(staging / "classes.csv", index=False)
    annotations = pd.concat(events, ignore_index=True)[["file", "start_s", "end_s", "label"]]
    annotations.round(4).to_csv(staging / "annotations.csv", index=False)
    try:
        os.rename(staging, target)
    except OSError:  # another process wrote it first
        shutil.rmtree(staging, ignore_errors=True)
    return target
