"""What makes training learn on small data: the schedule, the kept checkpoint, the recipes, and the baseline."""

from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from mix2 import train
from mix2.baseline import band_statistics, fit_baseline
from mix2.cli import build_parser, config_from_args
from mix2.config import DEMO_EPOCHS, RECIPES, apply_preset, apply_recipe, default_config
from mix2.errors import Mix2Error
from mix2.run import kept_by, kept_epoch
from mix2.training import AtomicCheckpointIO, BestCheckpoint, Classifier, WeightEma, ema_decay
from test_end_to_end import tiny_chorus_config


def optimiser_of(config, steps_per_epoch: int):
    """The optimiser and schedule a run of ``config`` would train with, at ``steps_per_epoch``."""
    module = Classifier(config.to_dict(), ["a", "b"])
    module.trainer = SimpleNamespace(estimated_stepping_batches=config.train.epochs * steps_per_epoch)
    return module.configure_optimizers()


def learning_rates(optimisers, steps: int) -> list[float]:
    optimiser, schedule = optimisers["optimizer"], optimisers["lr_scheduler"]["scheduler"]
    rates = []
    for _ in range(steps):
        rates.append(optimiser.param_groups[0]["lr"])
        optimiser.step()
        schedule.step()
    return rates


def test_default_schedule_warms_up_linearly_then_decays_along_a_cosine_every_step():
    config = default_config("data")
    config.train.epochs, config.train.lr, config.train.warmup_epochs = 10, 1e-2, 2
    optimisers = optimiser_of(config, steps_per_epoch=5)  # 50 steps, 10 of warm-up
    assert optimisers["lr_scheduler"]["interval"] == "step"
    rates = np.array(learning_rates(optimisers, 50))
    np.testing.assert_allclose(rates[:10], 1e-2 * np.arange(1, 11) / 10)  # from lr/10 up to lr
    np.testing.assert_allclose(rates[10:], 1e-2 * 0.5 * (1 + np.cos(np.pi * np.arange(40) / 40)), atol=1e-12)
    assert (np.diff(rates[10:]) < 0).all()  # it falls at every step, not once per epoch


def test_paper_recipe_keeps_its_per_epoch_cosine_without_warm_up():
    config = apply_recipe(default_config("data"), "paper")
    optimisers = optimiser_of(config, steps_per_epoch=5)
    assert optimisers["lr_scheduler"]["interval"] == "epoch"
    schedule = optimisers["lr_scheduler"]["scheduler"]
    assert isinstance(schedule, torch.optim.lr_scheduler.CosineAnnealingLR) and schedule.T_max == 100
    assert optimisers["optimizer"].param_groups[0]["lr"] == 1e-2  # the full rate from the first step


def test_recipes_set_optimisation_and_frames_and_combine_with_presets():
    config = apply_preset(apply_recipe(default_config("data"), "small-data"), "mix2")
    small = RECIPES["small-data"]
    assert all(getattr(config.train, key) == value for key, value in small["train"].items())
    assert (config.train.epochs, config.features.hop_length, config.augment.max_time_mask_frames) == (640, 256, 14)
    assert config.train.model == "mobilenetv3_large_050"
    assert config.mixing.method == "mix2" and config.augment.specaugment
    for other in ("paper", "small-data-v3", "small-data-v2", "small-data-v1"):
        assert set(RECIPES[other]) == set(small) and all(set(RECIPES[other][k]) == set(small[k]) for k in small)
    for recipe in RECIPES.values():  # the paper's time masks, up to 29 frames of 128 samples, in every recipe's frames
        assert recipe["augment"]["max_time_mask_frames"] == 29 * 128 // recipe["features"]["hop_length"]
    v1 = apply_recipe(default_config("data"), "small-data-v1")
    assert (v1.train.epochs, v1.features.hop_length, v1.augment.max_time_mask_frames, v1.train.lr) == (40, 128, 29, 3e-3)
    v3 = apply_recipe(default_config("data"), "small-data-v3")
    assert (v3.train.model, v3.train.epochs, v3.features.hop_length, v3.train.lr) == ("mobilenetv3_large_050", 320, 256, 3e-3)
    v2 = apply_recipe(default_config("data"), "small-data-v2")
    assert (v2.train.model, v2.train.epochs, v2.features.hop_length, v2.train.lr) == ("mobilenetv3_large", 160, 256, 3e-3)
    paper = apply_recipe(config, "paper")  # the same settings in each: the last one decides
    assert (paper.loss.pos_weight, paper.features.hop_length, paper.augment.max_time_mask_frames) == ("none", 128, 29)
    assert paper.train.model == "mobilenetv3_large"  # the paper's network, whatever the recipe before
    args = build_parser().parse_args(["train", "--data", "x", "--recipe", "small-data", "--epochs", "3"])
    parsed = config_from_args(args)
    assert parsed.train.epochs == 3 and parsed.train.lr == small["train"]["lr"]  # flags override the recipe
    with pytest.raises(
        Mix2Error, match="unknown recipe 'fast'; choose one of: paper, small-data, small-data-v3, small-data-v2, small-data-v1"
    ):
        apply_recipe(default_config("data"), "fast")


def test_the_demonstration_uses_the_small_data_recipe():
    config = default_config("chorus")
    assert config.train.schedule == "warmup_cosine" and config.loss.pos_weight == RECIPES["small-data"]["loss"]["pos_weight"]
    assert config.train.lr == RECIPES["small-data"]["train"]["lr"] and config.train.monitor == "last"
    assert (config.features.hop_length, config.augment.max_time_mask_frames) == (256, 14)
    assert config.train.model == RECIPES["small-data"]["train"]["model"] and config.train.epochs == DEMO_EPOCHS
    assert (config.mixing.method, config.augment.specaugment, config.augment.time_shift) == ("mix2", True, True)
    assert config.mixing.mix2.members == {"mixup": 0.25, "manifold_mixup": 0.5, "multimix": 0.25}
    assert default_config("data").mixing.method == "none"  # your data trains without mixing unless a preset says so


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("schedule", "linear", "train.schedule must be one of: warmup_cosine, cosine_per_epoch, got 'linear'"),
        ("monitor", "val_f1", "train.monitor must be one of: val_map, val_loss, val_macro_f1, last, got 'val_f1'"),
        ("warmup_epochs", -1.0, "train.warmup_epochs must be 0 or more, got -1.0"),
        ("ema_half_life_epochs", 0.0, "train.ema_half_life_epochs must be a positive number of epochs or null, got 0.0"),
    ],
)
def test_bad_training_settings_are_refused_in_one_line(setting, value, message):
    config = default_config("data")
    setattr(config.train, setting, value)
    with pytest.raises(Mix2Error) as raised:
        config.check()
    assert str(raised.value) == message


def test_bad_loss_and_input_settings_are_refused_in_one_line():
    for section, setting, value, message in [
        ("loss", "pos_weight", "inverse", "loss.pos_weight must be one of: none, sqrt, balanced, got 'inverse'"),
        ("augment", "mask_fill", "noise", "augment.mask_fill must be one of: mean, zero, got 'noise'"),
        ("features", "top_db", 0.0, "features.top_db must be a positive number of dB"),
        ("mixing", "partners", "rare", "mixing.partners must be one of: random, balanced, got 'rare'"),
    ]:
        config = default_config("data")
        setattr(getattr(config, section), setting, value)
        with pytest.raises(Mix2Error, match=message):
            config.check()


def test_the_kept_checkpoint_falls_back_to_validation_loss_where_map_ranks_nothing():
    config = default_config("data")
    assert kept_by(config, np.array([[0, 1], [0, 0]])) == "val_map"
    assert kept_by(config, np.zeros((3, 2))) == "val_loss"  # no validation positive: mAP is undefined
    config.train.monitor = "val_macro_f1"
    assert kept_by(config, np.zeros((3, 2))) == "val_macro_f1"  # the user's explicit choice stands


@pytest.mark.parametrize("mode, scores, kept", [("max", [0.5, 0.7, 0.7, 0.6], 2), ("min", [0.3, 0.2, 0.2, 0.25], 2)])
def test_the_best_checkpoint_is_the_latest_of_equal_scores(mode, scores, kept, tmp_path):
    callback = BestCheckpoint(tmp_path, "val_map", mode)
    trainer = SimpleNamespace(strategy=SimpleNamespace(reduce_boolean_decision=lambda decision: decision))
    best = None
    for epoch, score in enumerate(scores):
        if callback.check_monitor_top_k(trainer, torch.tensor(score)):
            best = epoch
            callback.best_k_models = {"best.ckpt": torch.tensor(score)}
            callback.kth_best_model_path = "best.ckpt"
    assert best == kept


@pytest.mark.parametrize("monitor", ["last", "val_loss"])
def test_a_run_that_keeps_its_last_epoch_copies_last_ckpt_instead_of_writing_it_twice(monitor, tmp_path, monkeypatch):
    serialised, after_each_epoch = [], []
    save, keep = AtomicCheckpointIO.save_checkpoint, BestCheckpoint._save_checkpoint

    def counting_save(self, checkpoint, path, storage_options=None):
        serialised.append((checkpoint["epoch"], Path(path).name))
        save(self, checkpoint, path, storage_options)

    def checking_keep(self, trainer, filepath):
        keep(self, trainer, filepath)
        folder = Path(filepath).parent
        after_each_epoch.append((folder / "best.ckpt").read_bytes() == (folder / "last.ckpt").read_bytes())

    monkeypatch.setattr(AtomicCheckpointIO, "save_checkpoint", counting_save)
    monkeypatch.setattr(BestCheckpoint, "_save_checkpoint", checking_keep)
    config = tiny_chorus_config(tmp_path)
    config.train.epochs, config.train.monitor, config.train.seed = 3, monitor, 1
    run_dir = train(config, run_dir=tmp_path / "run", progress=False)
    if monitor == "last":  # one serialisation an epoch; best.ckpt is last.ckpt's bytes, epoch by epoch
        assert serialised == [(epoch, "last.ckpt") for epoch in range(3)] and after_each_epoch == [True] * 3
        kept = torch.load(run_dir / "checkpoints" / "best.ckpt", weights_only=True)
        assert kept["epoch"] == 2 and kept_epoch(kept, run_dir / "checkpoints" / "best.ckpt", 3)["monitor"] is None
    else:  # a validation score chooses: best.ckpt is serialised for each epoch that improves it
        assert [name for _, name in serialised].count("last.ckpt") == 3 and ("best.ckpt" in [n for _, n in serialised])
        assert len(after_each_epoch) == [name for _, name in serialised].count("best.ckpt")


def test_band_statistics_are_each_bands_mean_then_standard_deviation():
    features = np.array([[[1.0, 3.0], [2.0, 2.0]]])  # 1 clip, 2 bands, 2 frames
    assert band_statistics(features).tolist() == [[2.0, 2.0, 1.0, 0.0]]


def test_baseline_learns_a_band_and_scores_classes_it_cannot_learn_as_their_share():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(60, 6, 20))
    labels = np.zeros((60, 3), dtype=int)
    labels[:30, 0] = 1
    features[:30, 2] += 2.0  # class 0 is louder in band 2
    labels[:, 2] = 1  # class 2 is in every clip: nothing to learn
    model = fit_baseline(band_statistics(features[::2]), labels[::2])
    scores = model.predict_proba(band_statistics(features[1::2]))
    assert scores.shape == (30, 3) and scores[:15, 0].min() > scores[15:, 0].max()
    assert (scores[:, 1] == 0).all() and (scores[:, 2] == 1).all()


class Scaled(L.LightningModule):
    """``w * batch_norm(x)`` fitted to ``y`` by plain SGD: one weight and one batch-norm statistic to follow."""

    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(1, affine=False)
        self.w = nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_index):
        x, y = batch
        return ((self.w * self.norm(x) - y) ** 2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.2)


class Trajectory(Callback):
    """The weight and the running mean after every optimiser step, and before the first."""

    def on_train_start(self, trainer, module):
        self.states = [(module.w.item(), module.norm.running_mean.item())]

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        self.states.append((module.w.item(), module.norm.running_mean.item()))


@pytest.mark.filterwarnings("ignore:.*LeafSpec.* is deprecated")  # Lightning 2.6 on torch 2.13; harmless
def test_the_weight_average_is_the_moving_average_of_every_step_with_its_half_life_in_epochs():
    torch.manual_seed(0)
    x = torch.randn(12, 1) * 3 + 5
    batches = DataLoader(TensorDataset(x, 2 * (x - 5) / 3), batch_size=4)  # 3 steps an epoch
    trajectory, module = Trajectory(), Scaled()
    trainer = L.Trainer(max_epochs=2, callbacks=[trajectory, WeightEma(half_life_epochs=0.5)], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(module, batches)
    decay = ema_decay(0.5, steps_per_epoch=3)
    assert decay == pytest.approx(0.5 ** (1 / 1.5))
    average = np.array(trajectory.states[1])  # the average starts at the first step's weights, not at initialisation
    for state in trajectory.states[2:]:
        average = decay * average + (1 - decay) * np.array(state)
    assert len(trajectory.states) == 7 and trajectory.states[-1][0] != pytest.approx(average[0], abs=1e-3)
    assert (module.w.item(), module.norm.running_mean.item()) == pytest.approx(tuple(average), abs=1e-6)
