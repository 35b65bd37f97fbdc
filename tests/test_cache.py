import numpy as np
import pandas as pd

import mix2.features.cache as cache_module
from conftest import write_tone
from mix2.config import FeatureConfig
from mix2.data.clips import ClipTable
from mix2.features.cache import FeatureCache, extract_features
from mix2.features.logmel import LogMel


def table_for(root, rows):
    clips = pd.DataFrame(rows, columns=["file", "start_s", "end_s"]).assign(group=lambda f: f["file"], split="train")
    return ClipTable(clips=clips, labels=np.zeros((len(rows), 1)), classes=["a"], root=root)


def test_features_are_computed_once_then_read(tmp_path, monkeypatch):
    write_tone(tmp_path / "a.wav", 5.0, sample_rate_hz=22_050)
    table = table_for(tmp_path, [("a.wav", 0.0, 3.0), ("a.wav", 2.0, 5.0), ("a.wav", 4.0, 7.0)])
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    paths, failures = extract_features(table, cache, clip_s=3.0, progress=False)
    assert failures == [] and all(p.is_file() for p in paths)
    features = np.load(paths[1])
    assert features.dtype == np.float16 and features.shape == (128, 376)

    decoded = []
    monkeypatch.setattr(cache_module, "read_windows", lambda *a, **k: decoded.append(a) or None)
    again, _ = extract_features(table, cache, clip_s=3.0, progress=False)
    assert again == paths and decoded == []


def test_cached_window_equals_the_front_end_on_that_window(tmp_path):
    write_tone(tmp_path / "a.wav", 4.0)
    table = table_for(tmp_path, [("a.wav", 1.0, 4.0)])
    [path], _ = extract_features(table, FeatureCache(tmp_path / "c", FeatureConfig()), clip_s=3.0, progress=False)
    import soundfile as sf
    import torch

    samples = sf.read(tmp_path / "a.wav", dtype="float32")[0][16_000:64_000]
    expected = LogMel()(torch.from_numpy(samples)[None])[0].numpy()
    np.testing.assert_allclose(np.load(path).astype(np.float32), expected, atol=0.05)


def test_settings_change_the_key_and_unreadable_files_are_listed(tmp_path):
    write_tone(tmp_path / "a.wav", 3.0)
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    table = table_for(tmp_path, [("a.wav", 0.0, 3.0), ("bad.wav", 0.0, 3.0)])
    paths, failures = extract_features(table, FeatureCache(tmp_path / "c", FeatureConfig()), 3.0, progress=False)
    other, _ = extract_features(table, FeatureCache(tmp_path / "c", FeatureConfig(n_mels=64)), 3.0, progress=False)
    assert paths[0] != other[0] and np.load(other[0]).shape == (64, 376)
    assert paths[1] is None and failures[0][0] == "bad.wav" and "unreadable audio" in failures[0][1]
