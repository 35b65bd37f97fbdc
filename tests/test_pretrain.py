"""mix2 pretrain: pairs of views over whole recordings, the contrastive step, a resumable run, and what uses it."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

import ddp_pretrain_steps
from conftest import shared_data, write_tone
from mix2.cli import build_parser, main, pretraining_from_args
from mix2.config import RECIPES, MixingConfig, RunConfig, recipe_for_encoder
from mix2.contrastive import InstanceScores, Pretrainer, info_nce, projection_head
from mix2.data.audio import read_audio
from mix2.data.crops import EpochItems, ViewPairs, list_recordings
from mix2.errors import Mix2Error, TrainingInterrupted
from mix2.inference import load_checkpoint, load_trained_model
from mix2.mixing import create_mixer
from mix2.models import create_model
from mix2.predict import embed, predict
from mix2.pretrain import pretrain, pretraining_config, resume_pretraining
from mix2.transfer import check_init

RATE = 16_000


@pytest.fixture(scope="module")
def two_recordings(tmp_path_factory):
    """Noise recordings of 4 s and 12 s, at the model's rate, each sample distinct."""
    folder = tmp_path_factory.mktemp("recordings")
    rng = np.random.default_rng(0)
    for name, seconds in [("short.wav", 4), ("long.wav", 12)]:
        sf.write(folder / name, rng.uniform(-0.5, 0.5, seconds * RATE).astype(np.float32), RATE, subtype="FLOAT")
    recordings, failures = list_recordings([folder])
    assert failures == [] and [r.path.name for r in recordings] == ["long.wav", "short.wav"]
    return recordings


def pairs(recordings, **options) -> ViewPairs:
    return ViewPairs(recordings, window_s=1.0, sample_rate_hz=RATE, crops=50, seed=3, **options)


def test_the_two_views_are_windows_of_one_recording_the_drawn_offsets_apart(two_recordings):
    views = pairs(two_recordings, max_view_offset_s=0.5, max_background_rms_ratio=0.0)
    for item in (0, 7, 123):
        draw = views.draw(item)
        first, second = views[item]
        path = two_recordings[draw.recording].path
        for view, offset_s in zip((first, second), draw.view_offsets_s):
            expected = read_audio(path, RATE, draw.start_s + round(offset_s * RATE) / RATE, 1.0)
            np.testing.assert_array_equal(view, expected)
            assert 0 <= offset_s <= 0.5
        assert draw.start_s + 1.5 <= two_recordings[draw.recording].duration_s + 1e-9


def test_each_view_gets_another_recording_as_background_at_the_drawn_ratio_of_rms(two_recordings):
    clean, noisy = pairs(two_recordings, max_background_rms_ratio=0.0), pairs(two_recordings, max_background_rms_ratio=0.5)
    for item in range(20):
        draw = noisy.draw(item)
        for clean_view, noisy_view, (other, _, ratio) in zip(clean[item], noisy[item], draw.backgrounds):
            assert other != draw.recording and 0 <= ratio <= 0.5
            added = noisy_view.astype(np.float64) - clean_view
            rms = lambda a: np.sqrt(np.mean(np.square(a, dtype=np.float64)))
            assert rms(added) / rms(clean_view) == pytest.approx(ratio, rel=1e-4, abs=1e-6)


def test_draws_are_a_function_of_seed_epoch_and_item_and_follow_durations(two_recordings):
    views = pairs(two_recordings)
    np.testing.assert_array_equal(views[5][0], views[5][0])
    assert views.draw(5) != views.draw(55)  # item 5 of epoch 1 is another crop
    assert views.draw(5) != pairs(two_recordings, stream=1).draw(5)  # validation's stream is apart
    assert list(EpochItems(50, epoch=2)) == list(range(100, 150))
    fixed = EpochItems(50, follow_epochs=False)
    fixed.set_epoch(4)
    assert list(fixed) == list(range(50))
    chosen = [views.draw(i).recording for i in range(3000)]
    assert np.mean(np.array(chosen) == 0) == pytest.approx(12 / 16, abs=0.03)  # long.wav holds 3/4 of the audio


def test_unreadable_or_empty_recordings_are_listed_as_failures(tmp_path):
    (tmp_path / "broken.wav").write_bytes(b"RIFF" + os.urandom(100))
    sf.write(tmp_path / "empty.flac", np.zeros((0, 1)), RATE)
    write_tone(tmp_path / "tone.flac", 2.0, 22_050)
    recordings, failures = list_recordings([tmp_path])
    assert [r.path.name for r in recordings] == ["tone.flac"]
    assert sorted(os.path.basename(f) for f, _ in failures) == ["broken.wav", "empty.flac"]
    with pytest.raises(Mix2Error, match="nowhere: no such folder or file"):
        list_recordings([tmp_path / "nowhere"])
    with pytest.raises(Mix2Error, match="at least 2 readable recordings"):
        ViewPairs(recordings, 1.0, RATE, 4, 0)


def test_infonce_is_the_cross_entropy_of_picking_the_own_view_and_mixing_mixes_the_instance_targets():
    torch.manual_seed(0)
    scores = torch.randn(6, 6)
    torch.testing.assert_close(info_nce(scores, torch.eye(6)), torch.nn.functional.cross_entropy(scores, torch.arange(6)))
    network = create_model("mobilenetv3_large", num_classes=0, n_mels=32).eval()
    projector = projection_head(16, 960).eval()
    keys = torch.nn.functional.normalize(torch.randn(6, 16), dim=1)
    head = InstanceScores(network, projector, keys, temperature=0.5)
    x = torch.rand(6, 1, 32, 40)
    embedding = network(x, stop="embedding")
    expected = torch.nn.functional.normalize(projector(embedding), dim=1) @ keys.T / 0.5
    torch.testing.assert_close(head(x), expected)
    mixer = create_mixer(MixingConfig(method="manifold_mixup"))
    mixer.reseed(1)
    mixed = mixer(head, x, torch.eye(6))
    mixer.reseed(1)
    with mixer.drawing():
        weights = mixer.draw(6).weights
    torch.testing.assert_close(mixed.targets, weights)  # each mixed view's target: its weights over the instances
    torch.testing.assert_close(mixed.logits, head(weights @ embedding, start="embedding"))


def test_the_projection_head_reads_the_embedding_of_the_network_pretrained():
    config = pretraining_config(["unused"])
    for model, dim in [("mobilenetv3_large", 960), ("mobilenetv3_large_050", 480)]:
        config.train.model = model
        pretrainer = Pretrainer(config.to_dict())
        assert pretrainer.projector[0].in_features == dim == pretrainer.model.embedding_dim


def small_config(folder, run_dir_parent):
    config = pretraining_config([str(folder)])
    config.pretrain.crops_per_epoch, config.pretrain.val_crops = 16, 8
    config.train.batch_size, config.train.epochs = 8, 2
    config.out_dir = str(run_dir_parent)
    return config


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pretrain")
    return pretrain(small_config(shared_data("frogs"), folder), run_dir=folder / "straight", progress=False)


def test_a_pretraining_run_folder_and_what_uses_its_network(pretrained, tmp_path):
    for name in ["config.yaml", "recordings.csv", "failures.csv", "logs/metrics.csv", "logs/speed.csv",
                 "plots/pretraining_curves.png", "checkpoints/best.ckpt", "checkpoints/last.ckpt"]:  # fmt: skip
        assert (pretrained / name).is_file(), name
    summary = json.loads((pretrained / "pretrained.json").read_text())
    assert summary["recordings"] == 17 and summary["epochs"] == 2 and 0 <= summary["val_top1"] <= 1
    log = pd.read_csv(pretrained / "logs" / "metrics.csv")
    assert log["epoch"].tolist() == [1, 2] and {"train_loss", "val_loss", "val_top1"} <= set(log.columns)
    assert log["train_loss"].iloc[0] == pytest.approx(np.log(8), abs=0.5)  # InfoNCE over 8 starts near log 8
    checkpoint = pretrained / "checkpoints" / "best.ckpt"
    trained = load_trained_model(checkpoint)
    assert trained.classes == [] and trained.network.classifier.out_features == 0
    windows, vectors = embed(checkpoint, [shared_data("frogs") / "great_plains_toad.wav"], progress=False)
    assert vectors.shape == (len(windows), 960) and vectors.std(axis=0).max() > 0
    with pytest.raises(Mix2Error, match="a pretrained network with no classes to score"):
        predict(checkpoint, [shared_data("frogs") / "great_plains_toad.wav"], progress=False)
    config = pretraining_config(["x"])
    config.train.init = str(checkpoint)
    check_init(config)  # the same network and front-end: a run can start from it


def test_an_interrupted_pretraining_resumes_to_the_same_weights(pretrained, tmp_path, monkeypatch):
    config = small_config(shared_data("frogs"), tmp_path)
    step = Pretrainer.training_step

    def interrupted(self, batch, index):
        if self.global_step == 3:  # the second step of epoch 2
            raise KeyboardInterrupt
        return step(self, batch, index)

    monkeypatch.setattr(Pretrainer, "training_step", interrupted)
    with pytest.raises(TrainingInterrupted, match="Continue with: mix2 pretrain --resume"):
        pretrain(config, run_dir=tmp_path / "resumed", progress=False)
    monkeypatch.setattr(Pretrainer, "training_step", step)
    assert load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["epoch"] == 0
    resume_pretraining(tmp_path / "resumed", progress=False)
    ours = load_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["state_dict"]
    theirs = load_checkpoint(pretrained / "checkpoints" / "last.ckpt")["state_dict"]
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key


def test_cli_pretrain_refuses_bad_input_in_one_line(tmp_path, capsys):
    assert main(["pretrain", "--out", str(tmp_path)]) == 2
    assert "pretraining needs recordings: pass --data FOLDER" in capsys.readouterr().err
    assert main(["pretrain", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert "nowhere: no such folder or file" in capsys.readouterr().err
    assert main(["pretrain", "--data", "x", "--temperature", "0", "--out", str(tmp_path)]) == 2
    assert "--temperature (pretrain.temperature) must be a positive number" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(tmp_path), "--epochs", "3"]) == 2
    assert "leave out --epochs" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(tmp_path), "--recipe", "small-data"]) == 2
    assert "leave out --recipe" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_pretrain_recipe_sets_only_the_frames_and_network_and_a_partial_config_keeps_pretrainings_defaults(tmp_path):
    defaults = pretraining_config(["x"])
    parser = build_parser()
    config = pretraining_from_args(parser.parse_args(["pretrain", "--data", "x", "--recipe", "small-data"]))
    small = RECIPES["small-data"]
    assert config.features.hop_length == small["features"]["hop_length"] == 256
    assert config.augment.max_time_mask_frames == small["augment"]["max_time_mask_frames"] == 14
    assert config.train.model == small["train"]["model"] == "mobilenetv3_large_050"
    config.train.model = defaults.train.model
    assert config.train == defaults.train  # optimisation stays pretraining's: not small-data's epochs, batch or lr
    assert config.features.n_mels == defaults.features.n_mels and config.augment.time_masks == defaults.augment.time_masks
    config.train.model = small["train"]["model"]
    assert recipe_for_encoder(config) == "small-data" and recipe_for_encoder(defaults) is None

    partial = tmp_path / "partial.yaml"
    partial.write_text("features: {n_mels: 64}\npretrain: {temperature: 0.1}\nmixing: {mix2: {members: {mixup: 1.0}}}\n")
    config = pretraining_from_args(parser.parse_args(["pretrain", "--data", "x", "--config", str(partial), "--lr", "0.002"]))
    assert config.features.n_mels == 64 and config.pretrain.temperature == 0.1 and config.train.lr == 0.002
    assert (config.train.epochs, config.train.batch_size, config.train.warmup_epochs) == (40, 64, 2.0)  # not training's
    assert config.features.hop_length == defaults.features.hop_length and config.pretrain.crops_per_epoch == 2048
    assert config.mixing.mix2.members == {"mixup": 1.0}  # a mapping that is a setting is replaced whole, not merged
    partial.write_text("features: {n_mel: 64}\n")
    with pytest.raises(Mix2Error, match="unknown setting features.n_mel; did you mean features.n_mels"):
        pretraining_from_args(parser.parse_args(["pretrain", "--data", "x", "--config", str(partial)]))


def test_cli_pretrain_summarises_a_finished_run_and_how_to_fine_tune_from_it(pretrained, capsys):
    assert main(["pretrain", "--resume", str(pretrained), "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((pretrained / "pretrained.json").read_text())
    assert "is a finished pretraining run (it has pretrained.json); nothing to resume" in out
    assert f"kept epoch {summary['kept_epoch']} of 2 (best.ckpt): validation loss {summary['val_loss']:.3f}" in out
    assert "17 recordings, 3.6 min of audio" in out
    assert f"fine-tune it: mix2 train --data YOUR_DATA --init {pretrained / 'checkpoints' / 'best.ckpt'}" in out


def test_the_summary_of_a_run_pretrained_for_a_recipe_fine_tunes_with_that_recipe(pretrained, tmp_path, capsys):
    copy = tmp_path / "sixteen_ms"
    shutil.copytree(pretrained, copy)
    config = RunConfig.from_yaml(copy / "config.yaml")
    config.features.hop_length = 256  # as mix2 pretrain --recipe small-data-v2 writes it
    config.to_yaml(copy / "config.yaml")
    assert main(["pretrain", "--resume", str(copy), "--quiet"]) == 0
    checkpoint = copy / "checkpoints" / "best.ckpt"
    assert f"fine-tune it: mix2 train --data YOUR_DATA --recipe small-data-v2 --init {checkpoint}" in capsys.readouterr().out
    config.train.model = "mobilenetv3_large_050"  # and the network of mix2 pretrain --recipe small-data
    config.to_yaml(copy / "config.yaml")
    assert main(["pretrain", "--resume", str(copy), "--quiet"]) == 0
    assert f"fine-tune it: mix2 train --data YOUR_DATA --recipe small-data --init {checkpoint}" in capsys.readouterr().out


@pytest.fixture(scope="module")
def ddp_pretrained(tmp_path_factory):
    """The cases of ddp_pretrain_steps.py, pretrained by 2 processes (gloo) and by one: ``{case: (ddp, (module, logged))}``."""
    shared_data("frogs")  # skips where the recordings are absent
    folder = tmp_path_factory.mktemp("ddp_pretrain")
    script = Path(__file__).parent / "ddp_pretrain_steps.py"
    done = subprocess.run([sys.executable, str(script), str(folder), "2"], check=False, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return {
        case: (torch.load(folder / f"{case}.pt"), ddp_pretrain_steps.fit(case, devices=1)) for case in ddp_pretrain_steps.CASES
    }


@pytest.mark.parametrize("case", ddp_pretrain_steps.CASES)
def test_pretraining_over_two_processes_is_one_process_with_the_same_global_batch(ddp_pretrained, case):
    """Three steps with every key of the global batch (and its mixes) on 2 processes: the weights of one process
    that runs the global batch of 8 in micro-batches of 4, as batch norm sees it on each device."""
    ddp, (module, logged) = ddp_pretrained[case]
    start = ddp_pretrain_steps.pretrainer(case, devices=1).state_dict()
    weights = [key for key, value in start.items() if value.is_floating_point() and "running" not in key]
    one_step = torch.cat([(module.state_dict()[k] - start[k]).flatten() for k in weights])
    ddp_step = torch.cat([(ddp["state_dict"][k] - start[k]).flatten() for k in weights])
    assert one_step.norm() > 1e-3  # the weights did move
    assert (ddp_step - one_step).norm() / one_step.norm() < 1e-8
    assert ddp["logged"]["train_loss"] == pytest.approx(logged["train_loss"], rel=1e-6)  # one process logs float32


def test_pretraining_validation_over_two_processes_is_the_whole_set_on_one_model(ddp_pretrained):
    """Each process validates its share of every batch against all the batch's keys; the gathered loss and top-1 are
    those of one process validating the checkpoint's model (batch-norm statistics averaged over the processes)."""
    ddp, _ = ddp_pretrained["none"]
    alone = ddp_pretrain_steps.validate("none", ddp["state_dict"])
    assert ddp["logged"]["val_loss"] == pytest.approx(alone["val_loss"], rel=1e-9)
    assert ddp["logged"]["val_top1"] == alone["val_top1"] and 0 < alone["val_top1"] < 1
    assert abs(alone["val_loss"] - np.log(8)) > 1e-3  # the views are told apart, not all scored alike


def test_mix2_pretrain_on_two_cpu_processes_directly_or_prepared_then_resumed(tmp_path):
    """``--devices 2``: Lightning starts the second process, which pretrains the folder the first prepared; or
    ``--prepare-only``, then ``--resume`` (as every process of a cluster job runs it). One run folder, one summary."""

    def cli(*arguments: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "mix2.cli", "pretrain", *arguments, "--quiet"]
        return subprocess.run(command, check=False, capture_output=True, text=True, cwd=tmp_path)

    options = ["--data", str(shared_data("frogs")), "--epochs", "1", "--crops-per-epoch", "16", "--val-crops", "8"]
    options += ["--batch-size", "8", "--devices", "2", "--accelerator", "cpu", "--strategy", "ddp", "--mixing", "mix2"]
    direct = cli(*options, "--run-dir", str(tmp_path / "direct"))
    assert direct.returncode == 0, direct.stderr[-3000:]
    assert direct.stdout.count("run folder:") == 1  # the second process leaves the summary to the first
    prepared = cli(*options, "--run-dir", str(tmp_path / "prepared"), "--prepare-only")
    assert f"pretrain it, in one process or many, with: mix2 pretrain --resume {tmp_path / 'prepared'}" in prepared.stdout
    assert not (tmp_path / "prepared" / "checkpoints").exists()
    resumed = cli("--resume", str(tmp_path / "prepared"))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    for run in ("direct", "prepared"):
        speed = pd.read_csv(tmp_path / run / "logs" / "speed.csv")
        assert speed["clips"].tolist() == [16]  # both processes' shares of the 2 global batches of 8
        assert json.loads((tmp_path / run / "pretrained.json").read_text())["epochs"] == 1
    direct_weights = load_checkpoint(tmp_path / "direct" / "checkpoints" / "last.ckpt")["state_dict"]
    resumed_weights = load_checkpoint(tmp_path / "prepared" / "checkpoints" / "last.ckpt")["state_dict"]
    assert all(torch.equal(direct_weights[k], resumed_weights[k]) for k in direct_weights)  # the same run either way


def test_pretraining_refuses_validation_crops_that_several_processes_cannot_share(tmp_path, capsys):
    options = ["--data", str(tmp_path), "--devices", "2", "--accelerator", "cpu", "--batch-size", "8", "--val-crops", "12"]
    assert main(["pretrain", *options, "--out", str(tmp_path / "runs")]) == 2
    assert "--val-crops (12) must be a multiple of --batch-size (8) on several processes" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_a_process_started_besides_the_first_pretrains_only_a_prepared_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "1")  # as torchrun starts rank 1
    monkeypatch.delenv("MIX2_RUN_DIR", raising=False)
    with pytest.raises(Mix2Error, match="found no prepared run folder") as error:
        pretrain(small_config(shared_data("frogs"), tmp_path), run_dir=tmp_path / "run", progress=False)
    assert "mix2 pretrain --resume DIR" in str(error.value) and not (tmp_path / "run").exists()
