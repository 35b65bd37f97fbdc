import pytest

from mix2.config import DEMO_EPOCHS, TABLE_ONE, RunConfig, apply_preset, default_config
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
    assert (paper.train.schedule, paper.train.monitor, paper.features.top_db) == ("warmup_cosine", "val_map", 80.0)
    demo = default_config("chorus").train
    assert (demo.epochs, demo.batch_size, demo.lr) == (DEMO_EPOCHS, 32, 3e-3)


@pytest.mark.parametrize(
    "text, message",
    [
        ("train:\n  epoch: 3\n", "c.yaml: unknown setting train.epoch; did you mean train.epochs?"),
        ("trian:\n  epochs: 3\n", "c.yaml: unknown setting trian; did you mean train?"),
        ("mixing:\n  zzz: 1\n", "c.yaml: unknown setting mixing.zzz; mixing has: method, mixup_alpha,"),
        ("train: 3\n", "c.yaml: 'train' must be a mapping of settings, got 3"),
    ],
)
def test_unknown_settings_name_the_file_and_the_yaml_key(tmp_path, text, message):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(Mix2Error) as raised:
        RunConfig.from_yaml(tmp_path / "c.yaml")
    assert str(raised.value).startswith(str(tmp_path / message))


def test_presets_are_the_rows_of_table_one_each_adding_to_the_one_before():
    def row(name):
        config = apply_preset(default_config("data"), name)
        return config.augment.specaugment, config.augment.time_shift, config.mixing.method, config.train.epochs

    assert row("baseline-10ep") == (False, False, "none", 10)
    assert row("baseline") == (False, False, "none", 100)
    assert row("specaug") == (True, False, "none", 100)
    assert row("timeshift") == (True, True, "none", 100)
    assert [row(n)[2] for n in ("mixup", "manifold", "multimix")] == ["mixup", "manifold_mixup", "multimix"]
    pair = apply_preset(default_config("data"), "manifold+multimix").mixing
    assert pair.method == "mix2" and pair.mix2_members == {"manifold_mixup": 0.5, "multimix": 0.5}
    full = apply_preset(default_config("data"), "mix2")
    assert full.mixing.mix2_members == {"mixup": 0.25, "manifold_mixup": 0.5, "multimix": 0.25}
    assert full.augment.specaugment and full.augment.time_shift
    assert full.loss.name == "bce" and apply_preset(default_config("data"), "mix2+add").loss.name == "bce+add"
    assert row("add") == row("timeshift") and apply_preset(default_config("data"), "add").loss.name == "bce+add"
    assert TABLE_ONE[0] == "baseline-10ep" and TABLE_ONE[-1] == "mix2" and len(TABLE_ONE) == 11
    with pytest.raises(Mix2Error, match="unknown preset 'mixmix'"):
        apply_preset(default_config("data"), "mixmix")
