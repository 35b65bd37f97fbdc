"""mix2 train --init: a run started from another checkpoint's network, fine-tuned or probed linearly."""

import json

import pytest
import torch

from mix2 import default_config, train
from mix2.cli import main
from mix2.config import ENCODER_SETTINGS, RunConfig, apply_recipe
from mix2.errors import Mix2Error
from mix2.inference import load_checkpoint
from mix2.run import _classifier
from mix2.training import Classifier
from mix2.transfer import InitSource, check_init

SOURCE_CLASSES = ["a", "b", "c"]


def saved(module: Classifier, path) -> str:
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    return str(path)


@pytest.fixture
def source(tmp_path):
    """A checkpoint of a network for classes a, b, c whose weights and batch-norm statistics are not a new one's."""
    torch.manual_seed(1)
    config = default_config("data")
    config.features.n_mels = 64
    module = Classifier(config.to_dict(), SOURCE_CLASSES).train()
    module(torch.rand(4, 1, 64, 94))  # batch-norm statistics of their own
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return saved(module, tmp_path / "source.ckpt"), module


def started_from(path: str, classes: list[str], **train) -> tuple[RunConfig, Classifier]:
    config = default_config("data")
    config.features.n_mels = 64
    config.train.init = path
    for name, value in train.items():
        setattr(config.train, name, value)
    torch.manual_seed(2)
    return config, Classifier(config.to_dict(), classes)


def test_the_encoder_is_copied_and_the_classifier_keeps_the_rows_of_the_classes_both_name(source):
    path, module = source
    config, new = started_from(path, ["c", "x", "a"])
    fresh_row = new.model.classifier.weight[1].clone()
    InitSource.load(config.train.init).copy_into(new.model, ["c", "x", "a"])
    theirs, ours = module.model.state_dict(), new.model.state_dict()
    for name, value in theirs.items():
        if not name.startswith("classifier."):
            assert torch.equal(ours[name], value), name  # weights and batch-norm statistics alike
    for row, source_row in [(0, 2), (2, 0)]:  # c and a, wherever they stand
        assert torch.equal(ours["classifier.weight"][row], theirs["classifier.weight"][source_row])
        assert torch.equal(ours["classifier.bias"][row], theirs["classifier.bias"][source_row])
    assert torch.equal(ours["classifier.weight"][1], fresh_row)  # x is new: its row as initialised


def test_the_same_classes_start_exactly_where_the_checkpoint_ended(source):
    path, module = source
    config, new = started_from(path, SOURCE_CLASSES)
    InitSource.load(config.train.init).copy_into(new.model, SOURCE_CLASSES)
    x = torch.rand(3, 1, 64, 94)
    torch.testing.assert_close(new.eval()(x), module.eval()(x), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"model": "mobilenetv3_large_bandnorm"}, "holds a mobilenetv3_large network, this run trains mobilenetv3_large_band"),
        ({"n_mels": 128}, r"another front-end \(features.n_mels 64 against 128\)"),
    ],
)
def test_another_network_or_front_end_is_refused_in_one_line(source, change, message):
    config, _ = started_from(source[0], SOURCE_CLASSES)
    config.train.model = change.get("model", config.train.model)
    config.features.n_mels = change.get("n_mels", 64)
    with pytest.raises(Mix2Error, match=message) as refused:
        check_init(config)
    assert "recipe" not in str(refused.value)  # no recipe sets n_mels: no hint


def test_a_checkpoint_of_other_frames_or_network_is_refused_with_the_recipe_that_fits_it(source, tmp_path):
    path, _ = source
    config, _ = started_from(path, SOURCE_CLASSES)
    apply_recipe(config, "small-data-v2", ENCODER_SETTINGS)  # 16-ms frames against the checkpoint's 8-ms ones
    with pytest.raises(Mix2Error, match=r"\(features.hop_length 128 against 256\).*; for --recipe small-data-v2, pretrain "
                       r"with mix2 pretrain --recipe small-data-v2$"):  # fmt: skip
        check_init(config)
    apply_recipe(config, "small-data", ENCODER_SETTINGS)  # the half-width network too: the paper's checkpoint fits no recipe
    with pytest.raises(Mix2Error, match=r"holds a mobilenetv3_large network, this run trains mobilenetv3_large_050; "
                       r"pass --model mobilenetv3_large$"):  # fmt: skip
        check_init(config)
    for recipe, model in [("small-data-v2", "mobilenetv3_large"), ("small-data", "mobilenetv3_large_050")]:
        sixteen_ms_config = default_config("data")
        sixteen_ms_config.features.n_mels = 64
        apply_recipe(sixteen_ms_config, recipe, ENCODER_SETTINGS)
        assert sixteen_ms_config.train.model == model
        sixteen_ms = saved(Classifier(sixteen_ms_config.to_dict(), SOURCE_CLASSES), tmp_path / f"{recipe}.ckpt")
        config, _ = started_from(sixteen_ms, SOURCE_CLASSES)  # the paper's frames and network against the checkpoint's
        fits = (
            r"\(features.hop_length 256 against 128\).*; it fits --recipe small-data-v2$"
            if recipe == "small-data-v2"
            else "pass --model mobilenetv3_large_050, or --recipe small-data, whose frames and network it has$"
        )
        with pytest.raises(Mix2Error, match=fits):
            check_init(config)


def test_a_frozen_encoder_keeps_its_weights_and_statistics_in_training_and_a_factor_scales_its_rate(source):
    path, _ = source
    _, frozen = started_from(path, SOURCE_CLASSES, encoder_lr_factor=0.0, schedule="cosine_per_epoch")
    frozen.train()
    frozen.on_train_batch_start(None, 0)
    assert all(not m.training for n, m in frozen.model.named_children() if n != "classifier") and frozen.model.classifier.training
    before = {k: v.clone() for k, v in frozen.model.state_dict().items()}
    frozen(torch.rand(4, 1, 64, 94)).sum().backward()
    for name, value in frozen.model.state_dict().items():
        if not name.startswith("classifier."):
            assert torch.equal(value, before[name]), name  # running statistics too
    optimizer = frozen.configure_optimizers()["optimizer"]
    assert [set(g["params"]) for g in optimizer.param_groups] == [set(frozen.model.classifier.parameters())]
    _, gentle = started_from(path, SOURCE_CLASSES, encoder_lr_factor=0.1, lr=0.01, schedule="cosine_per_epoch")
    groups = gentle.configure_optimizers()["optimizer"].param_groups
    assert [g["lr"] for g in groups] == [0.01, pytest.approx(0.001)]
    assert set(groups[0]["params"]) == set(gentle.model.classifier.parameters())
    assert len(groups[1]["params"]) == len(list(gentle.model.parameters())) - 2


def test_a_run_records_where_it_started_and_a_resumed_one_keeps_the_record_without_reloading(source, tmp_path):
    path, module = source
    config, _ = started_from(path, ["c", "x"])
    started = _classifier(config, ["c", "x"], None, tmp_path, starting=True)
    record = json.loads((tmp_path / "init.json").read_text())
    assert record["checkpoint"] == path and record["classes_kept"] == ["c"] and len(record["md5"]) == 32
    assert started.hparams["initialised_from"] == record
    assert torch.equal(started.model.stem[0].weight, module.model.stem[0].weight)
    torch.manual_seed(3)
    resumed = _classifier(config, ["c", "x"], None, tmp_path, starting=False)  # its weights come from its own checkpoint
    assert resumed.hparams["initialised_from"] == record
    assert not torch.equal(resumed.model.stem[0].weight, module.model.stem[0].weight)


def test_a_linear_probe_from_a_trained_run_on_the_chorus(tmp_path):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs, config.train.batch_size = 1, 8
    first = train(config, run_dir=tmp_path / "first", progress=False)
    config.train.init = str(first / "checkpoints" / "last.ckpt")
    config.train.encoder_lr_factor = 0.0
    probe = train(config, run_dir=tmp_path / "probe", progress=False)
    theirs = load_checkpoint(first / "checkpoints" / "last.ckpt")["state_dict"]
    ours = load_checkpoint(probe / "checkpoints" / "last.ckpt")
    changed = [k for k, v in ours["state_dict"].items() if not torch.equal(v, theirs[k])]
    assert changed and all(k.startswith("model.classifier.") for k in changed)  # the classifier alone learned
    assert ours["hyper_parameters"]["initialised_from"]["checkpoint"] == config.train.init


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--init", "nowhere.ckpt"], "nowhere.ckpt: no such checkpoint file"),
        (["--encoder-lr-factor", "2"], "--encoder-lr-factor (train.encoder_lr_factor) must be in [0, 1]"),
    ],
)
def test_cli_refuses_a_bad_start_before_any_work(argv, message, tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "runs"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
