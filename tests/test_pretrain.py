"""mix2 pretrain: pairs of views over whole recordings, the contrastive step, a resumable run, and what uses it."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import shared_data, write_tone
from mix2.cli import main
from mix2.config import MixingConfig
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
    projector = projection_head(16).eval()
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
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_pretrain_summarises_a_finished_run_and_how_to_fine_tune_from_it(pretrained, capsys):
    assert main(["pretrain", "--resume", str(pretrained), "--quiet"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((pretrained / "pretrained.json").read_text())
    assert "is a finished pretraining run (it has pretrained.json); nothing to resume" in out
    assert f"kept epoch {summary['kept_epoch']} of 2 (best.ckpt): validation loss {summary['val_loss']:.3f}" in out
    assert "17 recordings, 3.6 min of audio" in out
    assert f"fine-tune it: mix2 train --data YOUR_DATA --init {pretrained / 'checkpoints' / 'best.ckpt'}" in out
