"""What a new user meets first: settings refused before any work, no debris, help, clear checkpoint and
threshold errors, Raven tables that tell sites apart, a quiet Python API and a report that skips what
is not a finished run."""

import json
import logging
import shutil
from operator import attrgetter

import pandas as pd
import pytest

from conftest import shared_data
from mix2 import default_config, train
from mix2 import run as run_module
from mix2.cli import FLAGS, main
from mix2.errors import input_error
from mix2.predict import predict

FROG = "great_plains_toad.wav"


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--lr", "-1"], "--lr (train.lr) must be a positive number, got -1.0"),
        (["--weight-decay", "-1"], "--weight-decay (train.weight_decay) must be 0 or more, got -1.0"),
        (["--seed", "-1"], "--seed (train.seed) must be a whole number from 0 to 2**32 - 1, got -1"),
        (["--num-workers", "-1"], "--num-workers (train.num_workers) must be 0 (load in the training process) or more, got -1"),
        (["--epochs", "0"], "--epochs (train.epochs) must be a whole number of epochs, 1 or more, got 0"),
        (["--epochs", "-1"], "--epochs (train.epochs) must be a whole number of epochs, 1 or more, got -1"),
        (["--threshold", "2"], "--threshold (train.threshold) must be a probability between 0 and 1, got 2.0"),
        (["--window-s", "0"], "--window-s (data.window_s) must be a positive number of seconds, got 0.0"),
        (["--val-split", "even"], "--val-split (data.val_split) must be one of: random, stratified, got 'even'"),
        (["--val-folds", "1"], "--val-folds (data.val_folds) must be 0 (off) or 2 or more, got 1"),
        (["--val-folds", "3", "--val-fold", "4"], "--val-fold (data.val_fold) must be from 1 to val_folds (3), got 4"),
        (["--val-fold", "2"], "--val-fold (data.val_fold) must stay 1 unless val_folds (2 or more) cuts folds, got 2"),
        (
            ["--mixing", "mixupp"],
            "--mixing (mixing.method) must be one of: manifold_mixup, mix2, mixup, multimix, none, got 'mixupp'",
        ),
        (["--mix-partners", "rare"], "--mix-partners (mixing.partners) must be one of: random, balanced, got 'rare'"),
        (["--loss", "focal"], "--loss (loss.name) must be one of: bce, bce+add, got 'focal'"),
        (["--add-weight", "-1"], "--add-weight (loss.add.weight) must be 0 or more, got -1.0"),
        (["--accelerator", "tpu"], "--accelerator (train.accelerator) must be one of: auto, cpu, gpu, cuda, got 'tpu'"),
    ],
)
def test_bad_settings_are_one_line_before_any_work_and_leave_nothing(argv, message, tmp_path, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("data was read before the settings were checked")

    monkeypatch.setattr(run_module, "read_source", no_work)
    assert main(["train", *argv, "--out", str(tmp_path / "runs"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"mix2: error: {message}\n"
    assert not (tmp_path / "runs").exists()


def test_a_gpu_asked_for_on_a_machine_without_one_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    assert main(["train", "--accelerator", "gpu", "--out", str(tmp_path), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "mix2: error: --accelerator (train.accelerator) is gpu, but PyTorch sees no GPU on this machine; use cpu or auto\n"
    )


def test_every_flag_names_a_real_setting():
    config = default_config("chorus")
    for section, field in FLAGS:
        assert hasattr(attrgetter(section)(config), field), (section, field)


def test_an_experiment_checks_every_run_before_planning(tmp_path, capsys):
    out = tmp_path / "experiment"
    assert main(["experiment", str(out), "--presets", "timeshift", "--seeds", "0", "--lr", "0", "--plan-only"]) == 2
    assert capsys.readouterr().err == "mix2: error: --lr (train.lr) must be a positive number, got 0.0\n"
    assert not out.exists()


def test_a_run_that_fails_to_start_is_removed(tmp_path, monkeypatch):
    def unreadable(*args, **kwargs):
        raise input_error("somewhere.wav", "unreadable audio")

    monkeypatch.setattr(run_module, "extract_features", unreadable)
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    run_dir = tmp_path / "runs" / "failed"
    with pytest.raises(run_module.Mix2Error) as raised:
        train(config, run_dir=run_dir, progress=False)
    assert str(raised.value) == f"somewhere.wav: unreadable audio (the run had not started: {run_dir} was removed)"
    assert not run_dir.exists() and (tmp_path / "runs").is_dir()
    kept = tmp_path / "mine"  # a folder the user made is never removed
    kept.mkdir()
    with pytest.raises(run_module.Mix2Error):
        train(config, run_dir=kept, progress=False)
    assert kept.is_dir()


def test_more_folds_than_recordings_is_one_line_and_leaves_nothing(tmp_path):
    config = default_config("chorus")
    config.data.chorus_recordings = 6  # 4 of them outside test
    config.data.val_folds = 5
    run_dir = tmp_path / "runs" / "folds"
    with pytest.raises(run_module.Mix2Error) as raised:
        train(config, run_dir=run_dir, progress=False)
    assert str(raised.value) == (
        f"chorus: 5 folds need as many recordings outside test, and there are fewer (the run had not started: {run_dir} was removed)"
    )
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs, config.train.batch_size = 1, 8
    return train(config, run_dir=tmp_path_factory.mktemp("newcomer") / "run", progress=False)


@pytest.mark.slow
def test_the_python_api_is_quiet_and_the_bar_counts_epochs_from_1_without_a_logger_version(tmp_path, capfd):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs, config.train.batch_size = 1, 8
    logging.getLogger("mix2").handlers.clear()  # as in a fresh Python session, where the CLI configured nothing
    train(config, run_dir=tmp_path / "run", progress=True)
    captured = capfd.readouterr()
    printed = captured.out + captured.err
    for banner in ("GPU available", "TPU available", "litlogger", "v_num"):
        assert banner not in printed, banner
    assert "features of the test clips" in printed  # the bars after training say what they are for
    assert "Epoch 1/1" in printed and "Epoch 0" not in printed  # as every message counts epochs


@pytest.mark.slow
def test_predict_takes_a_run_folder_and_refuses_what_is_not_a_checkpoint(finished_run, tmp_path, capsys):
    frog = shared_data("frogs") / FROG
    by_folder = predict(finished_run, [frog], progress=False)
    by_file = predict(finished_run / "checkpoints" / "best.ckpt", [frog], progress=False)
    pd.testing.assert_frame_equal(by_folder, by_file)
    pd.testing.assert_frame_equal(predict(finished_run / "checkpoints", [frog], progress=False), by_file)
    assert main(["predict", str(tmp_path), str(frog), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"mix2: error: {tmp_path}: a folder without a checkpoint; pass a run folder (its checkpoints/best.ckpt is used) "
        "or a .ckpt file\n"
    )
    readme = tmp_path / "README.md"
    readme.write_text("# not a checkpoint\n")
    assert main(["predict", str(readme), str(frog), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"mix2: error: {readme}: not a mix2 checkpoint: not a file PyTorch saved, or one cut short "
        "(pass the .ckpt that mix2 train wrote)\n"
    )
    assert "weights_only" not in err


@pytest.mark.parametrize(
    "thresholds, message",
    [
        ("1.5", "thresholds '1.5': each threshold must lie between 0 and 1, got 1.5 for 'frog_a'"),
        ("0", "thresholds '0.0': each threshold must lie between 0 and 1, got 0.0 for 'frog_a'"),
        (
            "tuned",
            (
                "thresholds 'tuned': no such file; thresholds are a number between 0 and 1 (0.5), 'checkpoint' (tuned on "
                "validation at training), or a CSV file with class,threshold"
            ),
        ),
    ],
)
def test_impossible_thresholds_are_refused_before_any_scoring(checkpoint, thresholds, message, tmp_path, capsys):
    argv = ["predict", str(checkpoint), str(shared_data("frogs") / FROG), "--thresholds", thresholds]
    assert main([*argv, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err == f"mix2: error: {message}\n"
    assert not (tmp_path / "out").exists()


def test_other_thresholds_in_the_same_output_folder_are_refused(checkpoint, tmp_path, capsys):
    argv = ["predict", str(checkpoint), str(shared_data("frogs") / FROG), "--out", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0
    before = {path.name: path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()}
    assert main([*argv, "--thresholds", "checkpoint"]) == 2
    assert capsys.readouterr().err == (
        f"mix2: error: {tmp_path / 'out' / 'predict.json'}: this folder holds a prediction with other settings "
        "(thresholds); use a new folder\n"
    )
    assert {path.name: path.read_bytes() for path in (tmp_path / "out").rglob("*") if path.is_file()} == before
    assert main([*argv, "--thresholds", "0.5"]) == 0  # the same thresholds, written out as the default: resumes


def test_predict_that_scores_nothing_fails_and_points_to_the_failures(checkpoint, tmp_path, capsys):
    (tmp_path / "audio").mkdir()
    (tmp_path / "audio" / "broken.wav").write_bytes(b"RIFF" + bytes(100))
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(tmp_path / "audio"), "--out", str(out), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        "mix2: error: no recording could be scored; the 1 unreadable recording(s) are listed with the reason in "
        f"{out / 'failures.csv'}\n"
    )
    assert pd.read_csv(out / "failures.csv")["file"].tolist() == [str(tmp_path / "audio" / "broken.wav")]


def test_raven_tables_keep_each_recordings_path_under_the_input_folder(checkpoint, tmp_path):
    frog = shared_data("frogs") / FROG
    for site in ("site1", "site2"):
        (tmp_path / "archive" / site).mkdir(parents=True)
        shutil.copy(frog, tmp_path / "archive" / site / "0001.wav")
    predict(checkpoint, [tmp_path / "archive"], tmp_path / "out", thresholds=0.01, progress=False)
    begin_files = {}
    for table in sorted((tmp_path / "out" / "raven").glob("*.selections.txt")):
        begin_files[table.name] = set(pd.read_csv(table, sep="\t")["Begin File"])
    assert begin_files == {"0001-1.selections.txt": {"site1/0001.wav"}, "0001-2.selections.txt": {"site2/0001.wav"}}


def test_help_version_and_verbs(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.startswith("mix2 0.")
    assert main([]) == 0
    verbs = capsys.readouterr().out
    for verb in ("train", "evaluate", "baseline", "experiment", "predict", "merge", "download", "report"):
        assert f"\n    {verb}" in verbs, verb
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = capsys.readouterr().out
    titles = ["data:", "model and training:", "mixing and loss:", "hardware:", "output:"]
    assert [text.index(f"\n{title}\n") for title in titles] == sorted(text.index(f"\n{title}\n") for title in titles)
    assert "examples:\n  mix2 train " in text and text.count("\n  mix2 train") == 2
    with pytest.raises(SystemExit):
        main(["evaluate", "--help"])
    assert "best: the epoch kept on validation" in capsys.readouterr().out


@pytest.mark.slow
def test_report_skips_and_names_folders_that_are_not_finished_runs(finished_run, tmp_path, capsys):
    debris = tmp_path / "half-made"
    debris.mkdir()
    (debris / "config.yaml").write_text("train:\n  epochs: 3\n")
    out = tmp_path / "report.html"
    assert main(["report", str(finished_run), str(debris), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"mix2: skipped {debris}: not an experiment folder or a finished run" in printed
    assert out.is_file() and str(finished_run) in out.read_text()
    assert main(["report", str(debris), "--out", str(out)]) == 2
    assert "nothing to report" in capsys.readouterr().err


@pytest.mark.slow
def test_groups_and_the_per_class_plot_leave_out_classes_without_test_clips(finished_run):
    metrics = json.loads((finished_run / "metrics.json").read_text())
    per_class = metrics["per_class"]
    for group, members in metrics["group_classes"].items():
        left_out = metrics["groups_left_out"][group]
        assert left_out == [c for c in members if per_class[c]["test_positives"] == 0]
        scored = [per_class[c]["f1"] for c in members if c not in left_out]
        assert metrics["groups"][group] == (pytest.approx(sum(scored) / len(scored)) if scored else None)
