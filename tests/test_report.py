"""The HTML report: self-contained, complete, and loading cleanly in a real headless Chromium."""

import base64
import re
import shutil
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest

from mix2 import default_config
from mix2.errors import Mix2Error
from mix2.experiment import Experiment, run_experiment
from mix2.reporting.html import write_report
from mix2.reporting.plots import cooccurrence
from mix2.run import baseline

CHROMIUM = Path("/usr/bin/chromium")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def experiment_dir(tmp_path_factory):
    config = default_config("chorus")
    config.data.chorus_recordings = 6
    config.train.epochs = 1
    config.train.batch_size = 8
    config.train.monitor = "val_map"  # the report names the validation score that kept the epoch
    out = tmp_path_factory.mktemp("report") / "exp"
    run_experiment(out, Experiment(config, ["timeshift", "mix2"], [0]), progress=False)
    return out


def test_cooccurrence_counts_clips_with_both():
    labels = np.array([[1, 1, 0], [1, 0, 0], [1, 1, 1], [0, 0, 0]])
    assert cooccurrence(labels).tolist() == [[3, 2, 1], [2, 2, 1], [1, 1, 1]]


@pytest.mark.slow
def test_report_is_self_contained_and_holds_every_part(experiment_dir):
    page = write_report([experiment_dir, experiment_dir / "runs/mix2/seed0"], experiment_dir / "both.html").read_text()
    for text in ["Table I: macro F1 and mAP (%) at threshold 0.5", "tuned on validation", "Figure 3", "Per-class F1", "Difference to timeshift",
                 "Co-occurrence of classes", "Configuration of each run", "runs/timeshift/seed0", "mixing:", "tuned threshold",
                 "checkpoint best (epoch 1 of 1, best validation val_map)"]:  # fmt: skip
        assert text in page, text
    assert re.search(r"<td>mix2</td>\s*<td>[\d.]+ ± [\d.]+</td>", page)  # the preset's row with mean ± std
    assert "<script" not in page and not re.search(r"""(src|href)=["']?(https?:|//|file:)""", page)
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == len(re.findall(r"<img ", page)) >= 7
    assert all(base64.b64decode(data).startswith(PNG_SIGNATURE) for data in images)


@pytest.mark.slow
def test_report_shows_the_baseline_beside_a_run_and_an_experiment(experiment_dir):
    run_dir = experiment_dir / "runs/timeshift/seed0"
    baseline(run_dir, progress=False)  # the first run of the experiment
    page = write_report([experiment_dir, run_dir], experiment_dir / "baseline.html").read_text()
    assert page.count("<td>baseline (log-mel statistics + logistic regression), threshold 0.5</td>") == 2
    assert "<td>baseline (log-mel statistics + logistic regression), tuned per class on validation</td>" in page
    assert "The baseline on the same split" in page


def test_report_refuses_a_folder_that_is_no_run(tmp_path):
    with pytest.raises(Mix2Error, match="neither an experiment folder"):
        write_report([tmp_path], tmp_path / "r.html")


@pytest.mark.slow
def test_report_loads_in_headless_chromium_with_no_console_errors(experiment_dir, tmp_path):
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is absent (Debian's chromium package; .ci/run installs it)")
    sync_playwright = pytest.importorskip("playwright.sync_api", reason="playwright is in the test extra").sync_playwright
    report = write_report([experiment_dir], tmp_path / "report.html")
    flags = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri(), wait_until="load")
        widths = page.evaluate("Array.from(document.images).map(image => image.naturalWidth)")
        table = page.locator("table").first
        assert table.is_visible() and "timeshift" in table.inner_text()
        table.screenshot(path=str(tmp_path / "table.png"))
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
        browser.close()
    assert errors == []
    assert len(widths) >= 2 and all(width > 0 for width in widths)  # every embedded figure decoded
    shot = matplotlib.image.imread(tmp_path / "table.png")
    assert shot.shape[0] > 40 and len(np.unique(shot.reshape(-1, shot.shape[-1]), axis=0)) > 10  # drawn, not blank


@pytest.fixture
def drawn(monkeypatch):
    """The figures the plots make, kept open to be read instead of closed after saving."""
    from mix2.reporting import plots

    figures = []
    monkeypatch.setattr(plots, "_save", lambda figure, path: figures.append(figure) or path)
    return figures


def test_per_class_plot_names_the_weakest_classes_and_leaves_out_those_never_heard(drawn, tmp_path):
    from mix2.reporting.plots import LABELLED_CLASSES, plot_per_class

    names = [f"species_{k:02d}" for k in range(20)]
    per_class = {
        name: {"f1": k / 20, "test_positives": 0 if k < 3 else 5, "train_positives": k + 1} for k, name in enumerate(names)
    }
    metrics = {"per_class": per_class, "group_classes": {"frequent": names[10:], "common": [], "rare": names[:10]}}
    plot_per_class(metrics, tmp_path / "p.png")
    (axes,) = drawn[0].axes
    assert sum(len(points.get_offsets()) for points in axes.collections) == 17  # the 3 never heard are not drawn as F1 0
    assert "17 classes; 3 class(es) without a test clip left out" in axes.get_title()
    labels = [text.get_text() for text in axes.texts]
    assert labels == names[3 : 3 + LABELLED_CLASSES]  # the lowest F1s among those heard


def test_cooccurrence_colour_bar_reads_as_plain_counts(drawn, tmp_path):
    from mix2.reporting.plots import plot_cooccurrence

    labels = np.zeros((300, 3), dtype=int)
    labels[:250, 0], labels[:40, 1], labels[:3, 2] = 1, 1, 1
    plot_cooccurrence(labels, ["a", "b", "c"], tmp_path / "c.png")
    colour_bar = drawn[0].axes[1]
    drawn[0].canvas.draw()
    ticks = [label.get_text() for label in colour_bar.get_yticklabels() if label.get_text()]
    assert ticks == ["1", "2", "5", "10", "20", "50", "100", "200", "250"]
    assert colour_bar.get_ylabel().startswith("clips with both classes")


def test_the_report_reads_its_folders_and_writes_nothing_there(experiment_dir, tmp_path, capsys):
    def snapshot():
        return {path: path.stat().st_mtime_ns for path in experiment_dir.rglob("*")}

    shutil.rmtree(experiment_dir / "results")  # a report alone never writes an experiment's results
    before = snapshot()
    write_report([experiment_dir, experiment_dir / "runs" / "mix2" / "seed0"], tmp_path / "report.html")
    assert snapshot() == before and capsys.readouterr().out == ""
    assert "Table I" in (tmp_path / "report.html").read_text()


def test_reporting_imports_nothing_that_trains_or_runs_experiments():
    import ast

    import mix2.reporting

    for module in Path(mix2.reporting.__file__).parent.glob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
        assert not imported & {"mix2.run", "mix2.training", "mix2.experiment", "mix2"}, (module.name, imported)
