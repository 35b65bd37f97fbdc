import numpy as np
import pandas as pd
import pytest

from conftest import shared_data, write_tone
from mix2.data.events import read_events_folder, read_raven_table, window_labels, window_starts
from mix2.errors import Mix2Error


@pytest.mark.parametrize(
    "duration, expected",
    [(5.0039, [0, 1, 2]), (3.0, [0]), (1.2, [0]), (4.0, [0, 1]), (6.5, [0, 1, 2, 3])],
)
def test_window_starts(duration, expected):
    assert window_starts(duration, 3.0, 1.0).tolist() == expected


def events(*rows):
    return pd.DataFrame(rows, columns=["start_s", "end_s", "class_index"])


def test_event_across_window_border_labels_both_windows():
    starts = window_starts(6.0, 3.0, 1.0)  # windows [0,3) [1,4) [2,5) [3,6)
    labels = window_labels(starts, 3.0, events((2.9, 3.2, 0)), n_classes=2)
    assert labels[:, 0].tolist() == [1, 1, 1, 1] and labels[:, 1].sum() == 0
    labels = window_labels(starts, 3.0, events((0.2, 0.5, 1)), n_classes=2)
    assert labels[:, 1].tolist() == [1, 0, 0, 0]


def test_min_overlap_needs_that_much_or_the_whole_short_event():
    starts = np.array([0.0, 3.0])
    long_event = events((2.5, 4.0, 0))  # 0.5 s in the first window, 1.0 s in the second
    assert window_labels(starts, 3.0, long_event, 1, min_overlap_s=0.75)[:, 0].tolist() == [0, 1]
    short_event = events((1.0, 1.2, 0))  # shorter than min_overlap_s, wholly inside window 0
    assert window_labels(starts, 3.0, short_event, 1, min_overlap_s=0.75)[:, 0].tolist() == [1, 0]
    touching = events((3.0, 3.5, 0))  # touches window 0 at its end only
    assert window_labels(starts, 3.0, touching, 1)[:, 0].tolist() == [0, 1]


def make_events_folder(root, durations, annotations, classes=None):
    for i, duration in enumerate(durations):
        write_tone(root / f"audio/r{i}.wav", duration)
    pd.DataFrame({"file": [f"audio/r{i}.wav" for i in range(len(durations))], "duration_s": durations}).to_csv(
        root / "recordings.csv", index=False
    )
    pd.DataFrame(annotations, columns=["file", "start_s", "end_s", "label"]).to_csv(root / "annotations.csv", index=False)
    if classes is not None:
        pd.DataFrame({"label": classes}).to_csv(root / "classes.csv", index=False)
    return root


def test_events_folder_windows_labels_and_empty_recordings(tmp_path):
    root = make_events_folder(
        tmp_path,
        [5.0, 1.5, 4.0],
        [("audio/r0.wav", 0.5, 1.0, "frog"), ("audio/r1.wav", 0.1, 0.2, "toad")],
        classes=["frog", "toad", "owl"],
    )
    table = read_events_folder(root)
    assert table.classes == ["frog", "toad", "owl"]
    assert table.clips["file"].tolist() == ["audio/r0.wav"] * 3 + ["audio/r1.wav"] + ["audio/r2.wav"] * 2
    assert table.clips["start_s"].tolist() == [0, 1, 2, 0, 0, 1]
    assert table.labels.tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0], [0, 0, 0]]
    assert set(table.clips["group"]) == set(table.clips["file"])


def test_unknown_label_and_missing_columns_are_one_line_errors(tmp_path):
    root = make_events_folder(tmp_path / "a", [4.0], [("audio/r0.wav", 0.5, 1.0, "bat")], classes=["frog"])
    with pytest.raises(Mix2Error, match=r"annotations.csv: unknown label 'bat'"):
        read_events_folder(root)
    root = make_events_folder(tmp_path / "b", [4.0], [("audio/r0.wav", 0.5, 1.0, "frog")])
    pd.DataFrame({"file": ["audio/r0.wav"], "begin": [0]}).to_csv(root / "annotations.csv", index=False)
    with pytest.raises(Mix2Error, match=r"annotations.csv: missing column\(s\) start_s, end_s, label"):
        read_events_folder(root)


def test_reversed_times_and_unknown_recordings_are_refused(tmp_path):
    root = make_events_folder(tmp_path / "a", [4.0], [("audio/r0.wav", 2.0, 1.0, "frog")])
    with pytest.raises(Mix2Error, match="row 2: times must satisfy"):
        read_events_folder(root)
    root = make_events_folder(tmp_path / "b", [4.0], [("audio/other.wav", 1.0, 2.0, "frog")])
    with pytest.raises(Mix2Error, match="not among the recordings"):
        read_events_folder(root)


def test_missing_audio_is_listed_not_fatal(tmp_path):
    root = make_events_folder(tmp_path, [4.0, 4.0], [("audio/r0.wav", 1.0, 2.0, "frog")])
    (root / "audio/r1.wav").unlink()
    table = read_events_folder(root)
    assert set(table.clips["file"]) == {"audio/r0.wav"}
    assert table.failures == [("audio/r1.wav", "no such audio file")]


RAVEN = (
    "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tLow Freq (Hz)\tHigh Freq (Hz)\tAnnotation\n"
    "1\tWaveform 1\t1\t0.5\t1.5\t0\t0\tfrog\n"
    "1\tSpectrogram 1\t1\t0.5\t1.5\t500\t2000\tfrog\n"
    "2\tWaveform 1\t1\t3.2\t3.9\t0\t0\ttoad\n"
    "2\tSpectrogram 1\t1\t3.2\t3.9\t300\t900\ttoad\n"
)


def test_raven_tables_as_events(tmp_path):
    write_tone(tmp_path / "site1_night.wav", 5.0)
    (tmp_path / "site1_night.Table.1.selections.txt").write_text(RAVEN)
    events = read_raven_table(tmp_path / "site1_night.Table.1.selections.txt")
    assert events[["start_s", "end_s", "label"]].values.tolist() == [[0.5, 1.5, "frog"], [3.2, 3.9, "toad"]]
    table = read_events_folder(tmp_path)  # no recordings.csv: durations come from the audio
    assert table.classes == ["frog", "toad"]
    assert table.labels.tolist() == [[1, 0], [1, 1], [0, 1]]


def test_nips4b_real_events_folder():
    root = shared_data("nips4b")
    table = read_events_folder(root)
    recordings = pd.read_csv(root / "recordings.csv")
    assert len(table.classes) == 87 and table.classes[0] == "Aegcau_call"
    assert table.clips["file"].nunique() == len(recordings) == 530
    assert len(table) == sum(len(window_starts(d, 3.0, 1.0)) for d in recordings["duration_s"])
    silent = set(recordings["file"]) - set(pd.read_csv(root / "annotations.csv")["file"])
    assert table.labels[table.clips["file"].isin(silent).to_numpy()].sum() == 0
    assert 0 < (table.labels.sum(axis=1) == 0).mean() < 1
