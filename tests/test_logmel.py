import librosa
import numpy as np
import pytest
import torch

from mix2.features.logmel import LogMel, mel_filterbank, normalize_per_clip


def test_three_second_clip_is_128_by_376():
    assert LogMel()(torch.zeros(1, 48_000)).shape == (1, 128, 376)


def test_filterbank_matches_librosa_htk():
    ours = mel_filterbank(257, 0.0, 8_000.0, 128, 16_000).numpy()
    reference = librosa.filters.mel(sr=16_000, n_fft=512, n_mels=128, fmin=0.0, fmax=8_000.0, htk=True, norm=None)
    np.testing.assert_allclose(ours, reference.T, atol=1e-6)


def test_log_mel_matches_librosa():
    rng = np.random.default_rng(0)
    t = np.arange(48_000) / 16_000
    signal = (0.5 * np.sin(2 * np.pi * 440 * t * (1 + t)) + 0.05 * rng.normal(size=t.size)).astype(np.float32)
    ours = LogMel()(torch.from_numpy(signal)[None])[0].numpy()
    power = librosa.feature.melspectrogram(
        y=signal,
        sr=16_000,
        n_fft=512,
        hop_length=128,
        n_mels=128,
        htk=True,
        norm=None,
        power=2.0,
        center=True,
        pad_mode="reflect",
    )
    reference = librosa.power_to_db(power, ref=1.0, amin=1e-10, top_db=None)
    assert ours.shape == reference.shape
    loud = reference > reference.max() - 80  # compare where float32 round-off is not the signal
    np.testing.assert_allclose(ours[loud], reference[loud], atol=1e-3)


@pytest.mark.parametrize("top_db", [80.0, None])
def test_normalize_per_clip_does_not_depend_on_the_batch(top_db):
    a, b = torch.randn(1, 1, 8, 10) * 5, torch.randn(1, 1, 8, 10) + 100
    alone = normalize_per_clip(a, top_db)
    together = normalize_per_clip(torch.cat([a, b]), top_db)
    torch.testing.assert_close(together[:1], alone)
    assert alone.min() == 0 and 0 < alone.max() <= 1
    assert normalize_per_clip(torch.full((1, 1, 4, 4), 3.0), top_db).abs().max() == 0


def test_top_db_floors_each_clip_under_its_loudest_bin():
    clip = torch.linspace(-100, 0, 101).view(1, 1, 1, 101)  # 1 dB steps up to the loudest bin at 0 dB
    scaled = normalize_per_clip(clip, top_db=80.0)[0, 0, 0]
    torch.testing.assert_close(scaled[20:], torch.arange(81.0) / 80)  # 1/80 per dB above the floor at -80 dB
    assert (scaled[:20] == 0).all()  # everything under the floor sits on it
    torch.testing.assert_close(normalize_per_clip(clip + 37.5, top_db=80.0), normalize_per_clip(clip, top_db=80.0))


def test_bad_band_is_refused():
    with pytest.raises(ValueError, match="f_min_hz < f_max_hz"):
        LogMel(f_min_hz=9_000)
