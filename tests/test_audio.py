import numpy as np
import pytest
import soundfile as sf

from conftest import shared_data, write_tone
from mix2.data.audio import duration_s, fit_length, read_audio
from mix2.errors import Mix2Error


def test_stereo_44k_becomes_mono_16k(tmp_path):
    path = write_tone(tmp_path / "a.wav", 2.0, sample_rate_hz=44_100, channels=2)
    samples = read_audio(path, 16_000)
    assert samples.dtype == np.float32 and samples.shape == (32_000,)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * 16_000 / samples.size == pytest.approx(1_000, abs=1)


def test_partial_read_matches_slice_of_whole(tmp_path):
    path = write_tone(tmp_path / "a.wav", 3.0)
    whole = read_audio(path, 16_000)
    part = read_audio(path, 16_000, start_s=1.0, duration_s=0.5)
    np.testing.assert_array_equal(part, whole[16_000:24_000])


def test_fit_length_pads_and_crops():
    x = np.arange(5, dtype=np.float32)
    np.testing.assert_array_equal(fit_length(x, 3), [0, 1, 2])
    np.testing.assert_array_equal(fit_length(x, 7), [0, 1, 2, 3, 4, 0, 0])


@pytest.mark.parametrize(
    "content, problem",
    [(None, "no such audio file"), (b"", "unreadable audio"), (b"RIFF\x00\x00not really a wav file", "unreadable audio")],
)
def test_bad_audio_is_one_line_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "broken.wav"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(Mix2Error) as err:
        read_audio(path, 16_000)
    message = str(err.value)
    assert message.startswith(str(path)) and problem in message and "\n" not in message


def test_zero_length_audio_is_an_error(tmp_path):
    path = tmp_path / "empty.wav"
    sf.write(path, np.zeros((0, 1)), 16_000)
    with pytest.raises(Mix2Error, match="holds no samples"):
        read_audio(path, 16_000)


def test_real_recordings_in_every_format():
    frogs = shared_data("frogs")
    for path in [frogs / "Physalaemus_cuvieri.wav", frogs / "rfcx_f97ababc1.flac", frogs / "se_us" / "hyla-cinerea.mp3"]:
        samples = read_audio(path, 16_000, duration_s=1.0)
        assert samples.shape == (16_000,) and np.abs(samples).max() > 0
    assert duration_s(frogs / "rfcx_f97ababc1.flac") == pytest.approx(60.0, abs=0.1)
