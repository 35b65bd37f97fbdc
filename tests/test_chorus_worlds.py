"""benchmarks/chorus_worlds.py: the demonstration on other draws of the chorus, its configuration, refusals and summary."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import chorus_worlds  # benchmarks/chorus_worlds.py

from mix2.config import DEMO_EPOCHS, DEMO_PRESET, default_config


def test_a_world_is_the_demonstration_on_another_draw_of_the_chorus():
    config = chorus_worlds.world_config(3, None)
    assert config.data.chorus_seed == 3
    config.data.chorus_seed = 0
    assert config == default_config("chorus")
    assert chorus_worlds.world_config(1, "mobilenetv3_large_bandnorm").train.model == "mobilenetv3_large_bandnorm"
    before = chorus_worlds.world_config(2, "mobilenetv3_large", epochs=48)
    assert (before.train.model, before.train.epochs) == ("mobilenetv3_large", 48)
    assert chorus_worlds.world_config(2, None).train.epochs == default_config("chorus").train.epochs == DEMO_EPOCHS


@pytest.mark.parametrize(
    ("arguments", "problem"),
    [
        (["--worlds", "1", "0"], "--worlds: 0 is the demonstration's own chorus"),
        (["--worlds", "2", "2"], "--worlds must be distinct"),
        (["--seeds", "1", "1"], "--seeds must be distinct"),
        (["--jobs", "0"], "--jobs must be 1 or more"),
        (["--epochs", "0"], "--epochs must be 1 or more"),
        (["--presets", "mix2", "mix2"], "--presets must be distinct"),
    ],
)
def test_bad_arguments_are_refused_before_any_run(monkeypatch, tmp_path, arguments, problem):
    monkeypatch.setattr(sys, "argv", ["chorus_worlds.py", "--out", str(tmp_path / "worlds"), *arguments])
    with pytest.raises(SystemExit, match=problem):
        chorus_worlds.main()
    assert not (tmp_path / "worlds").exists()


def test_the_summary_pairs_each_network_with_its_worlds_baseline_and_the_presets_by_world_and_seed(capsys):
    def row(f1, rare, tuned, average_precision):
        names = [name for name, _ in chorus_worlds.COMPARED]
        return dict(zip(names, [f1, rare, tuned, average_precision]))

    rows = {
        (1, 0): {
            "baseline": row(0.60, 0.50, 0.60, 0.80),
            "timeshift": row(0.70, 0.40, 0.65, 0.90),
            "mix2": row(0.75, 0.50, 0.65, 0.90),
        },
        (2, 0): {
            "baseline": row(0.90, 0.90, 0.90, 0.95),
            "timeshift": row(0.80, 0.70, 0.85, 0.93),
            "mix2": row(0.80, 0.80, 0.85, 0.93),
        },
    }
    chorus_worlds.print_summary(rows, ["timeshift", "mix2"])
    lines = capsys.readouterr().out.splitlines()
    assert "| 1 | 0 | timeshift | 0.700 | 0.400 | 0.650 | 0.900 |" in lines
    # per world: +10 and -10 points of F1; -10 and -20 of rare; +5 and -5 tuned; +10 and -2 mAP
    assert (
        "| timeshift − baseline | +0.0 ± 14.1 (ahead on 1/2) | -15.0 ± 7.1 (ahead on 0/2) | +0.0 ± 7.1 (ahead on 1/2) | +4.0 ± 8.5 (ahead on 1/2) |"
        in lines
    )
    assert (
        "| mix2 − timeshift | +2.5 ± 3.5 (ahead on 1/2) | +10.0 ± 0.0 (ahead on 2/2) | +0.0 ± 0.0 (ahead on 0/2) | +0.0 ± 0.0 (ahead on 0/2) |"
        in lines
    )
    assert "| baseline | 75.0 ± 21.2 | 70.0 ± 28.3 | 75.0 ± 21.2 | 87.5 ± 10.6 |" in lines


def test_each_network_and_length_trains_in_a_folder_of_its_own(monkeypatch, tmp_path):
    planned = []

    def stop(experiments, jobs):
        planned.extend(folder for folder, _ in experiments)
        raise SystemExit("planned")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(chorus_worlds, "train_experiments", stop)
    for arguments, folder in [
        ([], f"chorus-worlds-mobilenetv3_large_050-e{DEMO_EPOCHS}"),  # the demonstration's
        (["--model", "mobilenetv3_large", "--epochs", "48"], "chorus-worlds-mobilenetv3_large-e48"),
    ]:
        monkeypatch.setattr(sys, "argv", ["chorus_worlds.py", "--worlds", "3", *arguments])
        with pytest.raises(SystemExit, match="planned"):
            chorus_worlds.main()
        assert planned.pop() == Path("runs/benchmarks") / folder / "world3" / DEMO_PRESET / "seed0"
