"""benchmarks/quality.py: the pretraining folder each recipe and network fine-tunes from, and the refusals it shares."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import crossval  # benchmarks/crossval.py
import quality  # benchmarks/quality.py


@pytest.mark.parametrize(
    ("recipe", "model", "folder"),
    [
        ("small-data", None, "pretrain-40x2048-hop256-mobilenetv3_large_050"),
        ("small-data-v2", None, "pretrain-40x2048-hop256"),
        ("small-data-v1", None, "pretrain-40x2048"),
        ("small-data", "mobilenetv3_large", "pretrain-40x2048-hop256"),
        ("small-data-v2", "mobilenetv3_large_bandnorm", "pretrain-40x2048-hop256-mobilenetv3_large_bandnorm"),
    ],
)
def test_each_recipe_s_network_and_frames_pretrain_in_a_folder_of_their_own(tmp_path, recipe, model, folder):
    for name in {folder, "pretrain-40x2048-hop256", "pretrain-40x2048-hop256-mobilenetv3_large_050"}:
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "pretrained.json").write_text("{}")  # finished: found, not pretrained again
    assert quality.pretrained(tmp_path, Path("data"), 40, 2048, recipe=recipe, model=model) == tmp_path / folder


def test_the_pretraining_it_starts_is_given_the_recipe_and_the_network(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(quality, "UNLABELLED", tmp_path)
    monkeypatch.setattr(quality.subprocess, "run", lambda command, **options: commands.append(command))
    quality.pretrained(tmp_path, Path("data"), 40, 2048, recipe="small-data")
    (command,) = commands
    assert command[command.index("--recipe") + 1] == "small-data"
    assert command[command.index("--model") + 1] == "mobilenetv3_large_050"
    assert command[command.index("--run-dir") + 1] == str(tmp_path / "pretrain-40x2048-hop256-mobilenetv3_large_050")


@pytest.mark.parametrize("benchmark", [quality, crossval])
def test_jobs_below_one_are_refused_in_one_line_before_any_work(monkeypatch, tmp_path, benchmark):
    def work(*arguments, **options):
        raise AssertionError("work started")

    for name in ("configure", "train_all", "read_plan"):
        if hasattr(benchmark, name):
            monkeypatch.setattr(benchmark, name, work)
    monkeypatch.setattr(sys, "argv", ["benchmark.py", "--data", str(tmp_path), "--jobs", "0"])
    with pytest.raises(SystemExit, match=r"^--jobs must be 1 or more, got 0$"):
        benchmark.main()


def test_runs_start_seed_by_seed_so_that_a_session_stopped_early_leaves_pairs(tmp_path, monkeypatch):
    started = []

    class FinishedAtOnce:
        returncode = 0

        def __init__(self, command, **options):
            started.append(int(command[command.index("--run-index") + 1]))

        def poll(self):
            return 0

    monkeypatch.setattr(quality.subprocess, "Popen", FinishedAtOnce)
    monkeypatch.setattr(quality.time, "sleep", lambda seconds: None)
    experiment = quality.Experiment(quality.RunConfig(), ["timeshift", "mix2", "mix2+add"], [0, 1])
    quality.train_all(tmp_path, experiment, jobs=2)
    # plan order is preset by preset (timeshift 0, 1; mix2 0, 1; mix2+add 0, 1): started as seed 0's three, then seed 1's
    assert started == [0, 2, 4, 1, 3, 5]
