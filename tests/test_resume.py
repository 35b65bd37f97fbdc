"""Runs that survive: resume after SIGKILL, Ctrl-C or SIGTERM, atomic checkpoints, NaN losses, determinism.

A short run is trained in a subprocess and interrupted from inside at a chosen step (see
``interrupted_run.py``), resumed with ``mix2 train --resume``, and compared file by file with
an uninterrupted run of the same seed.
"""

import itertools
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from mix2 import default_config, resume, train, training
from mix2.cli import main
from mix2.config import DEMO_PRESET, RunConfig
from mix2.errors import Mix2Error
from mix2.inference import load_checkpoint
from mix2.training import Classifier

pytestmark = pytest.mark.slow
HELPER = Path(__file__).with_name("interrupted_run.py")
STEPS_PER_EPOCH = 3  # 30 training clips in batches of 8, the last partial batch dropped


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 3-epoch run on a small chorus, with its config file and an uninterrupted run of it."""
    folder = tmp_path_factory.mktemp("resume")
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs, config.train.batch_size = 3, 8
    config.out_dir = str(folder / "runs")
    config.to_yaml(folder / "tiny.yaml")
    return folder / "tiny.yaml", config, train(config, run_dir=folder / "straight", progress=False)


def interrupted(config_file: Path, run_dir: Path, how: str, n: int) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(HELPER), str(config_file), str(run_dir), how, str(n)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )


def assert_same_run(resumed: Path, straight: Path) -> None:
    """Same log, same test scores and metrics, and the same final weights, to the bit."""
    for name in ["logs/metrics.csv", "metrics.json", "test_predictions.csv", "clips.csv"]:
        assert (resumed / name).read_text() == (straight / name).read_text(), name
    for name in ["last.ckpt", "best.ckpt"]:
        ours, theirs = (load_checkpoint(folder / "checkpoints" / name) for folder in (resumed, straight))
        assert ours["epoch"] == theirs["epoch"], name
        for key, value in theirs["state_dict"].items():
            assert torch.equal(ours["state_dict"][key], value), (name, key)


def test_killed_mid_epoch_resumes_to_the_same_run(tiny, tmp_path):
    config_file, _, straight = tiny
    run_dir = tmp_path / "killed"
    killed = interrupted(config_file, run_dir, "kill", 2 * STEPS_PER_EPOCH + 1)  # the second step of epoch 2
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1 and not (run_dir / "metrics.json").exists()
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 0
    assert_same_run(run_dir, straight)


def test_a_run_with_a_weight_average_resumes_to_the_same_run(tiny, tmp_path):
    _, config, _ = tiny
    config = RunConfig.from_dict(config.to_dict())
    config.train.ema_half_life_epochs = 0.5
    config.to_yaml(tmp_path / "ema.yaml")
    straight = train(config, run_dir=tmp_path / "straight", progress=False)
    killed = interrupted(tmp_path / "ema.yaml", tmp_path / "killed", "kill", 2 * STEPS_PER_EPOCH + 1)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert main(["train", "--resume", str(tmp_path / "killed"), "--quiet"]) == 0
    assert_same_run(tmp_path / "killed", straight)
    state = load_checkpoint(straight / "checkpoints" / "last.ckpt")  # the average is what is kept; the trained weights travel
    averaged, trained = state["state_dict"], state["current_model_state"]
    assert averaged.keys() == trained.keys() and not all(torch.equal(averaged[k], trained[k]) for k in averaged)
    # Averaging leaves training unchanged: the trained weights validate as the run without an average did.
    with_average, without = (
        pd.read_csv(folder / "logs" / "metrics.csv").dropna(subset=["val_loss"]) for folder in (straight, tiny[2])
    )
    for metric in ("val_loss", "val_map"):
        assert with_average[f"{metric}_trained"].tolist() == pytest.approx(without[metric].tolist(), abs=1e-6), metric
    assert with_average["val_loss"].tolist() != pytest.approx(without["val_loss"].tolist(), abs=1e-4)  # the average's own


def test_a_kill_while_saving_leaves_the_previous_checkpoint(tiny, tmp_path):
    config_file, _, straight = tiny
    run_dir = tmp_path / "killed-in-save"
    killed = interrupted(config_file, run_dir, "kill-in-save", 2)  # the save of epoch 1, half written
    assert killed.returncode == -9, killed.stderr[-2000:]
    checkpoints = run_dir / "checkpoints"
    assert (checkpoints / "last.ckpt.partial").stat().st_size < (checkpoints / "last.ckpt").stat().st_size
    with pytest.raises(Mix2Error):
        load_checkpoint(checkpoints / "last.ckpt.partial")
    assert load_checkpoint(checkpoints / "last.ckpt")["epoch"] == 0  # epoch 1's save never replaced it
    resume(run_dir, progress=False)
    assert_same_run(run_dir, straight)


@pytest.mark.parametrize("how", ["sigint", "sigterm"])
def test_ctrl_c_and_sigterm_stop_with_a_resume_command(tiny, tmp_path, how):
    config_file, _, straight = tiny
    run_dir = tmp_path / how
    stopped = interrupted(config_file, run_dir, how, STEPS_PER_EPOCH + 1)
    assert stopped.returncode == 130, stopped.stderr[-2000:]
    last_line = stopped.stderr.strip().split("\n")[-1]  # a line of its own, not after the progress bar's \r
    assert last_line == (
        f"mix2: {run_dir}: training interrupted. The last good checkpoint, {run_dir}/checkpoints/last.ckpt "
        f"(after epoch 1), is kept. Continue with: mix2 train --resume {run_dir}"
    )
    assert not (run_dir / "metrics.json").exists()  # an interrupted run never looks finished
    resume(run_dir, progress=False)
    assert_same_run(run_dir, straight)


def test_evaluate_refuses_an_unfinished_run_which_then_resumes(tiny, tmp_path, capsys):
    config_file, _, straight = tiny
    run_dir = tmp_path / "half"
    assert interrupted(config_file, run_dir, "sigint", STEPS_PER_EPOCH + 1).returncode == 130
    assert main(["evaluate", str(run_dir), "--quiet"]) == 2
    assert capsys.readouterr().err == (
        f"mix2: error: {run_dir}: training stopped after 1 of 3 epochs; finish it with: mix2 train --resume {run_dir} "
        "(it is evaluated when it finishes)\n"
    )
    assert not (run_dir / "metrics.json").exists() and not (run_dir / "test_predictions.csv").exists()
    assert main(["train", "--resume", str(run_dir), "--quiet", "--no-baseline"]) == 0  # trains, not "a finished run"
    assert_same_run(run_dir, straight)


def test_same_seed_same_run_and_another_seed_another(tiny, tmp_path):
    _, config, straight = tiny
    assert_same_run(train(config, run_dir=tmp_path / "again", progress=False), straight)
    config.train.seed = 1
    other = train(config, run_dir=tmp_path / "seed1", progress=False)
    assert (other / "logs/metrics.csv").read_text() != (straight / "logs/metrics.csv").read_text()


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tiny, tmp_path, monkeypatch):
    _, config, _ = tiny
    real_create_loss, calls = training.create_loss, itertools.count()

    def diverging_loss(loss_config, pos_weight=None):
        loss = real_create_loss(loss_config, pos_weight)
        real_terms = loss.terms

        def terms(*args):
            factor = float("nan") if next(calls) == STEPS_PER_EPOCH + 1 else 1.0
            return {name: value * factor for name, value in real_terms(*args).items()}

        loss.terms = terms
        return loss

    monkeypatch.setattr(training, "create_loss", diverging_loss)
    run_dir = tmp_path / "nan"
    with pytest.raises(Mix2Error) as err:
        train(config, run_dir=run_dir, progress=False)
    message = str(err.value)
    assert "\n" not in message and message.startswith(f"{run_dir}: the training loss became nan at epoch 2, step 5")
    assert f"{run_dir}/checkpoints/last.ckpt (after epoch 1), is kept" in message  # epochs counted from 1
    last = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    assert last["epoch"] == 0 and all(torch.isfinite(v).all() for v in last["state_dict"].values() if v.is_floating_point())
    assert not (run_dir / "metrics.json").exists()


def test_nan_validation_scores_stop_before_that_epoch_is_saved(tiny, tmp_path, monkeypatch):
    _, config, _ = tiny
    real_forward = Classifier.forward

    def forward_gone_wrong(self, x):
        logits = real_forward(self, x)
        return logits * float("nan") if self.current_epoch == 1 and not self.training else logits

    monkeypatch.setattr(Classifier, "forward", forward_gone_wrong)
    run_dir = tmp_path / "nan-val"
    with pytest.raises(Mix2Error, match="the validation scores became NaN or infinite at epoch 2;"):
        train(config, run_dir=run_dir, progress=False)
    for name in ["last.ckpt", "best.ckpt"]:
        assert load_checkpoint(run_dir / "checkpoints" / name)["epoch"] == 0


def test_resume_refuses_what_is_not_a_resumable_run(tiny, tmp_path, capsys):
    _, config, straight = tiny
    assert resume(straight, progress=False) == straight  # finished: left as it is
    assert "finished run" in capsys.readouterr().out
    with pytest.raises(Mix2Error, match="not a resumable mix2 run folder"):
        resume(tmp_path, progress=False)
    with pytest.raises(Mix2Error, match="already holds a run; continue it with: mix2 train --resume"):
        train(config, run_dir=straight, progress=False)
    assert main(["train", "--resume", str(straight), "--lr", "0.1", "--no-specaugment"]) == 2
    assert capsys.readouterr().err == (
        "mix2: error: --resume continues a run with its own config.yaml; leave out --lr, --no-specaugment\n"
    )


class RunsCode:
    """A pickle that would run a shell command when loaded without ``weights_only``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.marker}",))


def test_resume_refuses_a_tampered_checkpoint_without_running_it(tiny, tmp_path, capsys):
    _, _, straight = tiny
    run_dir = shutil.copytree(straight, tmp_path / "tampered")
    (run_dir / "metrics.json").unlink()
    marker = tmp_path / "pwned"
    torch.save({"epoch": 0, "payload": RunsCode(marker)}, run_dir / "checkpoints" / "last.ckpt", pickle_protocol=2)
    assert main(["train", "--resume", str(run_dir), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"mix2: error: {run_dir}/checkpoints/last.ckpt: not a mix2 checkpoint: it holds Python objects beyond tensors"
    )
    assert err.count("\n") == 1 and not marker.exists()


def test_an_experiment_resumes_its_interrupted_run(tiny, tmp_path, monkeypatch):
    """An experiment's unfinished run goes on from its last epoch instead of starting again."""
    from mix2 import experiment

    _, config, straight = tiny
    plan = experiment.Experiment(config, presets=[DEMO_PRESET], seeds=[0])  # the straight run's own preset
    real_step = Classifier.training_step

    def crash_in_epoch_2(self, batch, batch_index):
        if self.global_step == 2 * STEPS_PER_EPOCH + 1:
            raise RuntimeError("the node went down")
        return real_step(self, batch, batch_index)

    monkeypatch.setattr(Classifier, "training_step", crash_in_epoch_2)
    with pytest.raises(RuntimeError, match="the node went down"):
        experiment.run_experiment(tmp_path, plan, progress=False)
    run_dir = tmp_path / plan.runs()[0].path
    assert load_checkpoint(run_dir / "checkpoints" / "last.ckpt")["epoch"] == 1
    monkeypatch.setattr(Classifier, "training_step", real_step)
    resumed_from = []
    monkeypatch.setattr(experiment, "resume", lambda folder, progress: resumed_from.append(folder) or resume(folder, progress))
    experiment.run_experiment(tmp_path, progress=False)
    assert resumed_from == [run_dir]
    assert_same_run(run_dir, straight)
    assert DEMO_PRESET in (tmp_path / "results" / "table1.md").read_text()
