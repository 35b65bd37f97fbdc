"""Short real runs: train, keep the best checkpoint, evaluate, through the Python API and the CLI."""

import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import f1_score

from conftest import shared_data
from mix2 import default_config, evaluate, train
from mix2.cli import _print_baseline_comparison, main
from mix2.inference import load_trained_model
from mix2.metrics import tune_thresholds
from mix2.reporting.html import write_report
from mix2.run import score_split
from mix2.run_folder import read_test_scores

pytestmark = pytest.mark.slow


def tiny_chorus_config(tmp_path):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs = 2
    config.train.batch_size = 8
    config.train.monitor = "val_map"  # the small-data recipe keeps the last epoch; these runs test the choice
    config.out_dir = str(tmp_path / "runs")
    return config


@pytest.fixture(scope="module")
def chorus_run(tmp_path_factory):
    return train(tiny_chorus_config(tmp_path_factory.mktemp("e2e")), progress=False)


def test_run_folder_holds_everything(chorus_run):
    for name in ["config.yaml", "clips.csv", "dataset.json", "failures.csv", "checkpoints/best.ckpt", "checkpoints/last.ckpt",
                 "logs/metrics.csv", "metrics.json", "test_predictions.csv", "plots/groups.png", "plots/polyphony.png",
                 "plots/per_class_f1.png", "plots/training_curves.png"]:  # fmt: skip
        assert (chorus_run / name).is_file(), name
    metrics = json.loads((chorus_run / "metrics.json").read_text())
    for key in ["macro_f1", "macro_f1_active", "groups", "polyphony", "map", "per_class"]:
        assert key in metrics
    assert set(metrics["groups"]) == {"frequent", "common", "rare"} and len(metrics["per_class"]) == 10
    clips = pd.read_csv(chorus_run / "clips.csv")
    predictions = pd.read_csv(chorus_run / "test_predictions.csv")
    assert len(predictions) == (clips["split"] == "test").sum() == metrics["clips"]
    assert list(predictions.columns[:3]) == ["file", "start_s", "end_s"] and predictions.iloc[:, 3:].stack().between(0, 1).all()
    assert not set(clips.loc[clips["split"] == "test", "group"]) & set(clips.loc[clips["split"] != "test", "group"])


def test_best_is_chosen_on_validation_map_and_last_is_the_final_epoch(chorus_run):
    log = pd.read_csv(chorus_run / "logs" / "metrics.csv").set_index("epoch")
    assert list(log.index) == [1, 2] and log[["train_loss", "val_loss", "val_map"]].notna().all().all()  # one row per epoch
    best = torch.load(chorus_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
    kept = json.loads((chorus_run / "metrics.json").read_text())["kept"]
    assert kept["monitor"] == "val_map"  # threshold-free: macro F1 at 0.5 is 0.0 for the first epochs of small data
    latest_best = log.index[log["val_map"] == log["val_map"].max()][-1]  # of equal scores, the later epoch
    assert kept["epoch"] == best["epoch"] + 1 == latest_best and kept["epochs"] == 2  # counted from 1; Lightning's from 0
    assert kept["value"] == pytest.approx(log["val_map"].max())
    last = torch.load(chorus_run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["epoch"] == 1  # the second of two epochs, whether or not it was the best


def test_monitor_last_keeps_the_last_epoch_as_best(tmp_path, capsys):
    config = tiny_chorus_config(tmp_path)
    config.to_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--run-dir", str(run_dir), "--monitor", "last"]) == 0
    assert "kept epoch 2 of 2 (best.ckpt): the last epoch" in capsys.readouterr().out
    best, last = (torch.load(run_dir / "checkpoints" / f"{name}.ckpt", weights_only=True) for name in ("best", "last"))
    assert best["epoch"] == last["epoch"] == 1
    assert all(torch.equal(best["state_dict"][key], value) for key, value in last["state_dict"].items())
    assert json.loads((run_dir / "metrics.json").read_text())["kept"] == {"epoch": 2, "epochs": 2, "monitor": None, "value": None}
    assert sorted(path.name for path in (run_dir / "checkpoints").glob("*.ckpt")) == ["best.ckpt", "last.ckpt"]
    assert "checkpoint best (epoch 2 of 2, the last)" in write_report([run_dir], tmp_path / "report.html").read_text()


def test_checkpoint_rebuilds_its_model_and_evaluate_is_repeatable(chorus_run):
    module = load_trained_model(chorus_run / "checkpoints" / "best.ckpt")
    assert module.classes[0] == "Boana_fictus" and module.config.train.model == "mobilenetv3_large_050"
    assert module.network.embedding_dim == 480  # the half-width network of small-data, rebuilt from its name
    first = json.loads((chorus_run / "metrics.json").read_text())
    assert evaluate(chorus_run, progress=False)["macro_f1"] == pytest.approx(first["macro_f1"])


def test_thresholds_are_tuned_on_validation_kept_in_the_checkpoint_and_reported(chorus_run):
    stored = torch.load(chorus_run / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)["thresholds"]
    module = load_trained_model(chorus_run / "checkpoints" / "best.ckpt")
    assert list(stored) == module.classes and module.thresholds.tolist() == list(stored.values())
    # They are the F1-maximising scores of the validation clips, recomputed here from scratch.
    val, scores = score_split(chorus_run, "val")  # as evaluation scores
    assert module.thresholds == pytest.approx(tune_thresholds(val.labels, scores))
    _, test_scores = score_split(chorus_run, "test")
    assert np.array_equal(test_scores, read_test_scores(chorus_run)[1])  # the scores the metrics came from, exactly
    clips = pd.read_csv(chorus_run / "clips.csv")
    metrics = json.loads((chorus_run / "metrics.json").read_text())
    assert metrics["threshold"] == 0.5 and metrics["tuned"]["threshold"] == pytest.approx(module.thresholds.tolist())
    predictions = pd.read_csv(chorus_run / "test_predictions.csv")
    truth = clips[clips["split"] == "test"][module.classes].to_numpy()
    tuned_f1 = f1_score(truth, predictions[module.classes].to_numpy() >= module.thresholds, average="macro", zero_division=0)
    assert metrics["tuned"]["macro_f1"] == pytest.approx(tuned_f1, abs=1e-5)


def test_cli_train_and_evaluate(tmp_path, capsys):
    config = tiny_chorus_config(tmp_path)
    config.train.epochs = 1
    config.to_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "run"
    assert main(["train", "--config", str(tmp_path / "tiny.yaml"), "--run-dir", str(run_dir), "--no-specaugment", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test macro F1" in out and "kept epoch 1 of 1 (best.ckpt): its validation val_map was the best" in out
    # the baseline on the same clips, beside the network's numbers, and whether the network beats it
    assert "baseline (log-mel statistics + logistic regression) on the same test clips: macro F1 over active classes" in out
    assert "the network beats the baseline on each" in out or "the network trails the baseline on" in out
    baseline = json.loads((run_dir / "baseline.json").read_text())
    assert baseline["clips"] == json.loads((run_dir / "metrics.json").read_text())["clips"]
    saved = (run_dir / "config.yaml").read_text()
    assert "specaugment: false" in saved and "epochs: 1" in saved
    assert main(["evaluate", str(run_dir), "--checkpoint", "last", "--quiet"]) == 0


def test_cli_mix2_preset_with_add_logs_the_members_chosen_each_epoch(tmp_path):
    config = tiny_chorus_config(tmp_path)
    config.to_yaml(tmp_path / "tiny.yaml")
    run_dir = tmp_path / "mix2"
    assert (
        main(
            [
                "train",
                "--config",
                str(tmp_path / "tiny.yaml"),
                "--preset",
                "mix2",
                "--loss",
                "bce+add",
                "--epochs",
                "2",
                "--run-dir",
                str(run_dir),
                "--quiet",
            ]
        )
        == 0
    )
    saved = (run_dir / "config.yaml").read_text()
    assert "method: mix2" in saved and "name: bce+add" in saved
    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    members = log[["mix2_mixup", "mix2_manifold_mixup", "mix2_multimix"]].dropna()
    assert len(members) == 2 and members.sum(axis=1).round(6).eq(1).all()
    terms = log[["train_loss", "train_bce", "train_add"]].dropna()  # each term of the loss, per epoch
    assert len(terms) == 2 and (terms["train_add"] > 0).all()
    assert (terms["train_bce"] + terms["train_add"]).to_numpy() == pytest.approx(terms["train_loss"].to_numpy(), rel=1e-5)


def test_the_final_fraction_of_epochs_trains_without_mixing(tmp_path):
    config = tiny_chorus_config(tmp_path)
    config.mixing.method, config.train.epochs = "mix2", 3
    config.mixing.unmixed_final_fraction = 0.34  # one of three epochs, rounded
    run_dir = train(config, run_dir=tmp_path / "run", progress=False)
    members = pd.read_csv(run_dir / "logs" / "metrics.csv")[["mix2_mixup", "mix2_manifold_mixup", "mix2_multimix"]]
    assert members.dropna().sum(axis=1).round(6).tolist() == [1.0, 1.0, 0.0]  # Mix2 chose a member at every step, then none


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--data", "no/such/folder"], "mix2: error: no/such/folder: no such file or folder"),
        (["evaluate", "no/such/run"], "mix2: error: no/such/run: not a mix2 run folder (it has no config.yaml)"),
    ],
)
def test_cli_errors_are_one_line(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_trains_on_real_nips4b_recordings_and_lists_a_corrupt_one(tmp_path):
    source = shared_data("nips4b")
    recordings = pd.read_csv(source / "recordings.csv").iloc[:24]
    root = tmp_path / "nips4b_subset"
    (root / "audio").mkdir(parents=True)
    for file in recordings["file"]:
        (root / file).symlink_to(source / file)
    (root / "audio" / "broken.flac").write_bytes(b"fLaC" + bytes(200))
    pd.concat([recordings, pd.DataFrame({"file": ["audio/broken.flac"], "duration_s": [5.0]})]).to_csv(
        root / "recordings.csv", index=False
    )
    annotations = pd.read_csv(source / "annotations.csv")
    annotations[annotations["file"].isin(recordings["file"])].to_csv(root / "annotations.csv", index=False)
    (root / "classes.csv").write_text((source / "classes.csv").read_text())
    config = default_config(str(root))
    config.train.epochs, config.train.batch_size, config.out_dir = 1, 16, str(tmp_path / "runs")
    run_dir = train(config, progress=False)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(metrics["per_class"]) == 87 and metrics["clips"] > 0
    failures = pd.read_csv(run_dir / "failures.csv")
    assert failures["file"].tolist() == ["audio/broken.flac"] and "unreadable audio" in failures["reason"][0]
    assert "audio/broken.flac" not in set(pd.read_csv(run_dir / "clips.csv")["file"])


@pytest.mark.parametrize(
    ("ours", "verdict"),
    [
        ((0.9, 0.9, 0.8, 0.95), "the network beats the baseline on each"),  # level on rare counts as reaching it
        ((0.7, 0.6, 0.7, 0.8), ("the network trails the baseline on macro F1 over active classes, rare, tuned macro F1 over "
                                "active classes, mAP")),
        ((0.95, 0.95, 0.7, 0.95), ("the network beats the baseline on macro F1 over active classes, rare, mAP, and trails it "
                                   "on tuned macro F1 over active classes")),
    ],
)  # fmt: skip
def test_the_summary_says_where_the_network_beats_the_baseline_and_where_it_trails(capsys, ours, verdict):
    def metrics(f1, rare, tuned, average_precision):
        return {"macro_f1_active": f1, "groups": {"rare": rare}, "tuned": {"macro_f1_active": tuned}, "map": average_precision,
                "threshold": 0.5, "model": "log-mel statistics + logistic regression"}  # fmt: skip

    _print_baseline_comparison(metrics(*ours), metrics(0.85, 0.9, 0.75, 0.9))
    assert capsys.readouterr().out.splitlines()[-1] == f"{verdict} (at threshold 0.5 unless tuned)"
