"""Experiments: the plan, resuming, array-job tasks, and tables whose numbers are the runs' own."""

import json
import re

import numpy as np
import pandas as pd
import pytest

from mix2 import default_config
from mix2.cli import main
from mix2.data.clips import ClipTable
from mix2.errors import Mix2Error
from mix2.experiment import Experiment, aggregate_experiment, plan_experiment
from mix2.metrics import evaluate_scores
from mix2.reporting import results
from mix2.reporting.results import ResamplingTooLarge, paired_differences
from mix2.reporting.tables import format_mean_std, per_class_table, summary_table, to_markdown
from mix2.run_folder import write_clips

CLASSES = ["a", "b", "c"]
GROUPS = {"frequent": ["a"], "common": ["b"], "rare": ["c"]}


def fake_metrics(rng):
    """A metrics.json as evaluate() writes it, with random numbers."""

    def report():
        f1 = rng.random(3)
        return {
            "macro_f1": float(f1.mean()),
            "groups": {g: float(f1[CLASSES.index(m[0])]) for g, m in GROUPS.items()},
            "per_class": {c: {"f1": float(f1[i]), "test_positives": 4 - i, "train_positives": [2, 30, 7][i]} for i, c in enumerate(CLASSES)},
        }  # fmt: skip

    metrics = report()
    metrics.update(
        map=float(rng.random()),
        group_classes=GROUPS,
        polyphony={"0": {"clips": 5, "macro_f1": None}, "1": {"clips": 7, "macro_f1": float(rng.random())}},
        tuned={
            **report(),
            "polyphony": {"0": {"clips": 5, "macro_f1": None}, "1": {"clips": 7, "macro_f1": float(rng.random())}},
        },
    )
    return metrics


def fake_experiment(tmp_path, variants=None, seeds=(0, 1, 2), skip=()):
    plan = plan_experiment(tmp_path, Experiment(default_config("data"), ["timeshift", "mix2"], list(seeds), variants))
    rng = np.random.default_rng(0)
    for run in plan.runs():
        if run.path in skip:
            continue
        (tmp_path / run.path).mkdir(parents=True)
        (tmp_path / run.path / "metrics.json").write_text(json.dumps(fake_metrics(rng)))
    return plan


def test_plan_layout_and_each_run_config():
    plan = Experiment(default_config("data"), ["timeshift", "mix2+add"], [3, 4], ["anuraset36n", "anuraset36"])
    assert [r.path for r in plan.runs()][:3] == [
        "runs/anuraset36n/timeshift/seed3", "runs/anuraset36n/timeshift/seed4", "runs/anuraset36n/mix2+add/seed3"
    ]  # fmt: skip
    config = plan.config(plan.runs()[-1])
    assert (config.data.variant, config.train.seed, config.mixing.method, config.loss.name) == (
        "anuraset36",
        4,
        "mix2",
        "bce+add",
    )
    assert plan.base.train.seed == 0 and plan.base.mixing.method == "none"  # the base is never changed


@pytest.mark.parametrize(
    "presets, seeds, variants, message",
    [(["mixmix"], [0], None, "unknown preset"), (["mix2"], [0, 0], None, "each once"),
     (["mix2"], [0], ["anuraset99"], "unknown variant"), ([], [0], None, "at least one")],
)  # fmt: skip
def test_bad_plans_are_refused(presets, seeds, variants, message):
    with pytest.raises(Mix2Error, match=message):
        Experiment(default_config("data"), presets, seeds, variants)


def test_a_folder_keeps_its_plan(tmp_path):
    plan = plan_experiment(tmp_path, Experiment(default_config("data"), ["mix2"], [0, 1]))
    assert plan_experiment(tmp_path).to_dict() == plan.to_dict()  # resumed from experiment.yaml
    assert (tmp_path / "commands.txt").read_text().splitlines() == [
        f"mix2 experiment {tmp_path} --run-index 0 --quiet", f"mix2 experiment {tmp_path} --run-index 1 --quiet"
    ]  # fmt: skip
    with pytest.raises(Mix2Error, match="experiment.yaml: this folder holds another experiment \\(its seeds differ\\)"):
        plan_experiment(tmp_path, Experiment(default_config("data"), ["mix2"], [0, 1, 2]))
    with pytest.raises(Mix2Error, match="no experiment planned here"):
        plan_experiment(tmp_path / "empty")


def test_a_plan_that_plans_the_same_runs_is_the_same_experiment(tmp_path):
    """A base that differs only where every preset overrides it (the demonstration's default mixing changed from none
    to Mix2) plans the same runs, so the folder resumes; a base that changes a run is refused."""
    before = default_config("chorus")
    before.mixing.method = "none"
    plan_experiment(tmp_path, Experiment(before, ["timeshift", "mix2"], [0]))
    now = default_config("chorus")
    assert now.mixing.method == "mix2" and now.to_dict() != before.to_dict()
    assert plan_experiment(tmp_path, Experiment(now, ["timeshift", "mix2"], [0])).base.mixing.method == "mix2"
    assert plan_experiment(tmp_path).base.mixing.method == "mix2"  # the stored plan is replaced
    now.train.lr *= 2
    with pytest.raises(Mix2Error, match="this folder holds another experiment \\(its base differ\\)"):
        plan_experiment(tmp_path, Experiment(now, ["timeshift", "mix2"], [0]))


def test_table_one_is_mean_and_sample_std_of_the_runs(tmp_path):
    fake_experiment(tmp_path)
    written = aggregate_experiment(tmp_path)
    table = pd.read_csv(tmp_path / "results" / "table1.csv", index_col=0)
    assert list(table.index) == ["timeshift", "mix2"]
    for preset in table.index:
        runs = [json.loads((tmp_path / f"runs/{preset}/seed{s}/metrics.json").read_text()) for s in range(3)]
        rare = 100 * np.array([m["groups"]["rare"] for m in runs])
        assert table.loc[preset, "Rare mean"] == pytest.approx(rare.mean(), abs=0.01)
        assert table.loc[preset, "Rare std"] == pytest.approx(rare.std(ddof=1), abs=0.01)
        tuned_all = 100 * np.array([m["tuned"]["macro_f1"] for m in runs])
        tuned = pd.read_csv(tmp_path / "results" / "table1_tuned.csv", index_col=0)
        assert tuned.loc[preset, "All mean"] == pytest.approx(tuned_all.mean(), abs=0.01)
    markdown = written["table1"].read_text().splitlines()
    assert markdown[0].startswith("Table I: macro F1 and mAP (%) at threshold 0.5, mean ± std over seeds 0, 1, 2")
    assert markdown[2] == "| preset | Frequent | Common | Rare | All | mAP | runs |"
    assert (tmp_path / "results" / "figure3_polyphony.png").stat().st_size > 0
    svg = (tmp_path / "results" / "figure3_polyphony.svg").read_text()
    assert svg.lstrip().startswith("<?xml") and "threshold 0.5" in svg and "thresholds tuned per class on validation" in svg
    assert all(preset in svg for preset in ("timeshift", "mix2"))  # one line per preset, in the legend
    assert "table2" not in written


def test_table_two_holds_the_other_variants_and_unfinished_runs_are_left_out(tmp_path, capsys):
    variants = ["anuraset", "anuraset36n", "anuraset36"]
    fake_experiment(tmp_path, variants, seeds=(0, 1), skip={"runs/anuraset36/mix2/seed1"})
    written = aggregate_experiment(tmp_path)
    assert "1 run(s) not finished yet, left out: runs/anuraset36/mix2/seed1" in capsys.readouterr().out
    table = pd.read_csv(tmp_path / "results" / "table2.csv", index_col=0)
    assert [c for c in table.columns if c.endswith("All mean")] == ["anuraset36n All mean", "anuraset36 All mean"]
    assert table.loc["mix2", "anuraset36 runs"] == 1 and table.loc["mix2", "anuraset36 All std"] == 0
    only = json.loads((tmp_path / "runs/anuraset36/mix2/seed0/metrics.json").read_text())
    assert table.loc["mix2", "anuraset36 All mean"] == pytest.approx(100 * only["macro_f1"], abs=0.01)
    assert "Table II" in written["table2"].read_text()


def test_per_class_table_is_sorted_by_training_count(tmp_path):
    fake_experiment(tmp_path)
    aggregate_experiment(tmp_path)
    table = pd.read_csv(tmp_path / "results" / "per_class.csv", index_col=0)
    assert list(table.index) == ["b", "c", "a"] and list(table["train clips"]) == [30, 7, 2]
    f1 = [100 * json.loads((tmp_path / f"runs/mix2/seed{s}/metrics.json").read_text())["per_class"]["c"]["f1"] for s in range(3)]
    assert table.loc["c", "mix2 mean"] == pytest.approx(np.mean(f1), abs=0.01)


def test_summary_table_formats_and_markdown():
    rows = pd.DataFrame(
        {"preset": ["none", "none", "mix2"], "frequent": [0.5, 0.7, 0.6], "common": [0.2, 0.4, 0.3],
         "rare": [0.0, 0.1, 0.2], "all": [0.1, 0.2, 0.3], "map": [0.3, 0.5, 0.4]}
    )  # fmt: skip
    table = summary_table(rows, ["none", "mix2", "absent"])
    text = format_mean_std(table)
    assert list(text.index) == ["none", "mix2"] and text.loc["none", "Frequent"] == "60.0 ± 14.1"
    assert text.loc["mix2", "Rare"] == "20.0 ± 0.0" and list(text["runs"]) == [2, 1]
    assert to_markdown(table).splitlines()[2].startswith("| none | 60.0 ± 14.1 | 30.0 ± 14.1 |")
    per_class = per_class_table(
        pd.DataFrame({"preset": ["mix2"] * 2, "class": ["x", "y"], "group": ["rare", "frequent"], "f1": [0.25, 0.5],
                      "train_positives": [1, 9], "test_positives": [1, 2]}), ["mix2"]
    )  # fmt: skip
    assert list(per_class.index) == ["y", "x"] and per_class.loc["x", "mix2 mean"] == 25.0


@pytest.mark.slow
def test_cli_experiment_trains_resumes_and_runs_one_array_task(tmp_path, capsys):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs = 1
    config.train.batch_size = 8
    config.to_yaml(tmp_path / "tiny.yaml")
    out = tmp_path / "exp"
    argv = ["experiment", str(out), "--config", str(tmp_path / "tiny.yaml"), "--presets", "timeshift", "mixup", "--seeds", "0"]
    assert main([*argv, "--plan-only"]) == 0
    assert "planned 2 runs" in capsys.readouterr().out and not (out / "runs").exists()
    assert main(["experiment", str(out), "--run-index", "1", "--quiet"]) == 0  # one array task: the mixup run
    assert (out / "runs/mixup/seed0/metrics.json").is_file() and not (out / "runs/timeshift/seed0").exists()
    assert "[2/2] runs/mixup/seed0: macro F1" in capsys.readouterr().out
    finished = (out / "runs/mixup/seed0/metrics.json").stat().st_mtime_ns
    (out / "runs/timeshift/seed0/checkpoints").mkdir(parents=True)  # an interrupted run: trained again
    assert main(["experiment", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "[1/2] runs/timeshift/seed0" in printed and "[2/2]" not in printed  # the finished run is kept
    assert (out / "runs/mixup/seed0/metrics.json").stat().st_mtime_ns == finished
    assert "| timeshift |" in printed and (out / "results/table1.md").is_file()
    assert "Difference to timeshift (points) at threshold 0.5" in printed and "| mixup | " in printed
    assert main(["experiment", str(out), "--run-index", "2"]) == 2
    assert "outside this experiment's runs 0..1" in capsys.readouterr().err
    assert main([*argv[:-1], "1"]) == 2  # another plan in the same folder
    assert "its seeds differ" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--seed", "--mixing", "--no-specaugment"])
def test_experiment_refuses_what_its_presets_and_seeds_set_for_each_run(flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:  # never abbreviated to --seeds, never silently overridden
        main(["experiment", str(tmp_path / "exp"), flag, *(["x"] if flag != "--no-specaugment" else [])])
    assert exit_info.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
    assert not (tmp_path / "exp").exists()


def scored_experiment(tmp_path, seeds=(0, 1)):
    """An experiment whose runs hold real test predictions: ``timeshift`` scores at random, ``mix2`` near the truth
    on the first half of its recordings; test clips, 3 windows from each of 12 recordings, as ``evaluate`` writes them."""
    plan = plan_experiment(tmp_path, Experiment(default_config("data"), ["timeshift", "mix2"], list(seeds)))
    rng = np.random.default_rng(1)
    files = [f"rec{r:02d}.wav" for r in range(12) for _ in range(3)]
    clips = pd.DataFrame(
        {"file": files, "start_s": [float(i % 3) for i in range(36)], "end_s": 3.0, "group": files, "split": "test"}
    )
    labels = (rng.random((36, 3)) < 0.4).astype(np.uint8)
    labels[:3, 2] = 1  # every class is heard
    table = ClipTable(clips, labels, CLASSES, tmp_path)
    for run in plan.runs():
        run_dir = tmp_path / run.path
        run_dir.mkdir(parents=True)
        write_clips(run_dir, table)
        scores = rng.random((36, 3))
        if run.preset == "mix2":
            scores[:18] = 0.1 + 0.8 * labels[:18]
        metrics = evaluate_scores(labels, scores, CLASSES, GROUPS)
        tuned = np.array([0.5, 0.4, 0.6])
        metrics["tuned"] = evaluate_scores(labels, scores, CLASSES, GROUPS, threshold=tuned)
        (run_dir / "metrics.json").write_text(json.dumps(metrics))
        predictions = pd.concat([clips[["file", "start_s", "end_s"]], pd.DataFrame(scores, columns=CLASSES)], axis=1)
        predictions.to_csv(run_dir / "test_predictions.csv", index=False, float_format="%.6f")
    return plan


def test_paired_differences_are_the_runs_own_with_an_interval_over_test_recordings(tmp_path):
    scored_experiment(tmp_path)
    for tuned in (False, True):
        table = paired_differences(tmp_path, tuned=tuned)
        assert list(table.index) == ["mix2"] and table.index.name == "preset - timeshift" and table.loc["mix2", "seeds"] == 2
        runs = {
            (p, s): json.loads((tmp_path / f"runs/{p}/seed{s}/metrics.json").read_text())
            for p in ("timeshift", "mix2")
            for s in (0, 1)
        }
        report = {key: m["tuned"] if tuned else m for key, m in runs.items()}
        recorded = {
            key: {"All": report[key]["macro_f1"], "Rare": report[key]["groups"]["rare"], "mAP": m["map"]}
            for key, m in runs.items()
        }
        for label in ("All", "Rare", "mAP"):
            expected = 100 * np.mean([recorded["mix2", s][label] - recorded["timeshift", s][label] for s in (0, 1)])
            assert table.loc["mix2", f"{label} mean"] == pytest.approx(expected, abs=1e-9)
            assert table.loc["mix2", f"{label} low"] < table.loc["mix2", f"{label} mean"] < table.loc["mix2", f"{label} high"]
        # near-perfect scores on half the recordings against random ones: better under every resample
        assert table.loc["mix2", "All low"] > 0 and table.loc["mix2", "mAP low"] > 0
    written = aggregate_experiment(tmp_path)
    markdown = written["paired_tuned"].read_text()
    assert markdown.startswith("Difference to timeshift (points) at thresholds tuned on validation, mean over seeds paired")
    assert re.search(r"\| mix2 \| [+-]\d+\.\d \([+-]\d+\.\d to [+-]\d+\.\d\) \|", markdown)


def test_paired_differences_need_paired_runs_with_predictions_and_shared_test_clips(tmp_path):
    fake_experiment(tmp_path / "no-predictions")
    assert paired_differences(tmp_path / "no-predictions") is None
    assert "paired" not in aggregate_experiment(tmp_path / "no-predictions")
    scored_experiment(tmp_path / "one-seed-each")
    for path in ("runs/mix2/seed0", "runs/timeshift/seed1"):
        (tmp_path / "one-seed-each" / path / "metrics.json").unlink()  # unfinished
    assert paired_differences(tmp_path / "one-seed-each") is None
    scored_experiment(tmp_path / "other-clips")
    other = tmp_path / "other-clips" / "runs/mix2/seed1"
    clips = pd.read_csv(other / "clips.csv")
    clips.loc[0, "start_s"] = 0.5
    clips.to_csv(other / "clips.csv", index=False)
    with pytest.raises(Mix2Error, match="test_predictions.csv: its clips or classes are not the run's test clips"):
        paired_differences(tmp_path / "other-clips")
    predictions = pd.read_csv(other / "test_predictions.csv")
    predictions.loc[0, "start_s"] = 0.5
    predictions.to_csv(other / "test_predictions.csv", index=False)
    assert paired_differences(tmp_path / "other-clips") is None


def test_paired_intervals_too_large_to_resample_are_left_out_with_a_line(tmp_path, capsys, monkeypatch):
    scored_experiment(tmp_path)
    # 4 runs x 36 test clips x 3 classes x (1000 resamples + 12 recordings) weightings
    with pytest.raises(ResamplingTooLarge, match=r"4 runs x 36 test clips x 3 classes x 1012 weightings \(4.4e\+05"):
        paired_differences(tmp_path, max_work=4e5)
    monkeypatch.setattr(results, "PAIRED_WORK_LIMIT", 4e5)
    written = aggregate_experiment(tmp_path)
    assert "paired" not in written and "paired_tuned" not in written and "table1" in written
    out = capsys.readouterr().out
    assert out.count("the paired differences' intervals are left out: 4 runs x 36 test clips") == 1
    assert f"paired_differences('{tmp_path}') computes them" in out
