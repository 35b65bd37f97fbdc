import pytest

from mix2.config import DEMO_EPOCHS, TABLE_ONE, RunConfig, apply_preset, default_config
from mix2.errors import Mix2Error


def test_yaml_round_trip(tmp_path):
    config = default_config("some/folder")
    config.train.seed = 5
    config.augment.max_shift_frames = 10
    config.to_yaml(tmp_path / "c.yaml")
    assert RunConfig.from_yaml(tmp_path / "c.yaml") == config


FLAT_SETTINGS = """
mixing:
  method: mix2
  mixup_alpha: 0.4
  manifold_stages: [block3]
  multimix_alpha: 0.5
  multimix_examples: 64
  mix2_members: {mixup: 0.5, multimix: 0.5}
loss:
  name: bce+add
  add_weight: 0.3
  add_form: hard
  add_lambda_mu: 2.0
  add_lambda_sigma_p: 3.0
  add_lambda_mu_n: 4.0
  add_lambda_sigma_n: 5.0
"""


def test_settings_under_their_former_flat_names_are_read_under_their_groups(tmp_path):
    (tmp_path / "old.yaml").write_text(FLAT_SETTINGS)  # as run folders, plans and checkpoints before grouping hold them
    config = RunConfig.from_yaml(tmp_path / "old.yaml")
    mixing, add = config.mixing, config.loss.add
    assert (mixing.mixup.alpha, mixing.manifold_mixup.alpha, mixing.manifold_mixup.stages) == (0.4, 0.4, ["block3"])
    assert (mixing.multimix.alpha, mixing.multimix.examples, mixing.mix2.members) == (0.5, 64, {"mixup": 0.5, "multimix": 0.5})
    assert (add.weight, add.form, add.lambda_mu, add.lambda_sigma_p, add.lambda_mu_n, add.lambda_sigma_n) == (
        0.3, "hard", 2.0, 3.0, 4.0, 5.0,
    )  # fmt: skip
    assert (config.loss.name, config.loss.pos_weight, mixing.method) == ("bce+add", "none", "mix2")
    assert RunConfig.from_dict(config.to_dict()) == config  # and written back grouped


def test_a_setting_under_both_its_former_and_its_grouped_name_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("loss:\n  add_weight: 0.3\n  add: {weight: 0.5}\n")
    with pytest.raises(Mix2Error) as raised:
        RunConfig.from_yaml(tmp_path / "c.yaml")
    assert str(raised.value) == f"{tmp_path / 'c.yaml'}: loss.add_weight is the former name of loss.add.weight; give only one"


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
        ("mixing:\n  zzz: 1\n", "c.yaml: unknown setting mixing.zzz; mixing has: method, mixup, manifold_mixup,"),
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
    assert pair.method == "mix2" and pair.mix2.members == {"manifold_mixup": 0.5, "multimix": 0.5}
    full = apply_preset(default_config("data"), "mix2")
    assert full.mixing.mix2.members == {"mixup": 0.25, "manifold_mixup": 0.5, "multimix": 0.25}
    assert full.augment.specaugment and full.augment.time_shift
    assert full.loss.name == "bce" and apply_preset(default_config("data"), "mix2+add").loss.name == "bce+add"
    assert row("add") == row("timeshift") and apply_preset(default_config("data"), "add").loss.name == "bce+add"
    assert TABLE_ONE[0] == "baseline-10ep" and TABLE_ONE[-1] == "mix2" and len(TABLE_ONE) == 11
    with pytest.raises(Mix2Error, match="unknown preset 'mixmix'"):
        apply_preset(default_config("data"), "mixmix")
