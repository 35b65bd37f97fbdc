import pytest

from mix2.config import RunConfig, default_config
from mix2.errors import Mix2Error


def test_yaml_round_trip(tmp_path):
    config = default_config("some/folder")
    config.train.seed = 5
    config.augment.max_shift_frames = 10
    config.to_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml") == config


def test_paper_defaults_and_chorus_demo():
    paper = default_config("data")
    assert (paper.train.epochs, paper.train.batch_size, paper.train.lr, paper.train.weight_decay) == (100, 128, 1e-2, 0.01)
    assert (paper.features.n_mels, paper.features.n_fft, paper.features.hop_length, paper.features.sample_rate_hz) == (
        128,
        512,
        128,
        16_000,
    )
    demo = default_config("chorus").train
    assert (demo.epochs, demo.batch_size, demo.lr) == (10, 16, 1e-3)


def test_unknown_settings_name_the_file(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epochz: 3\n")
    with pytest.raises(Mix2Error, match=r"c.yaml: unknown setting\(s\) epochz in 'TrainConfig'"):
        RunConfig.from_yaml(tmp_path / "c.yaml")
