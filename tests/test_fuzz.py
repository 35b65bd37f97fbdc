"""Fuzzing with hypothesis: the table readers and the windowing, on inputs nobody would write by hand.

A reader either returns a table that keeps every promise of :class:`~mix2.data.clips.ClipTable`
(binary labels, ``0 <= start < end``, paths inside the data folder, no clip twice) or raises a
one-line :class:`~mix2.errors.Mix2Error` that names the file. Anything else is a bug.
"""

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from mix2.data.clips import ClipTable
from mix2.data.events import TIME_TOLERANCE_S, read_events_folder, read_raven_table, window_labels, window_starts
from mix2.data.multihot import read_multihot
from mix2.errors import Mix2Error
from mix2.predict import recording_windows

# Fresh examples on every local run; the same ones on CI (CI=true), so that a run there is reproducible.
FUZZ = settings(
    max_examples=150, deadline=None, derandomize=bool(os.environ.get("CI")), suppress_health_check=[HealthCheck.too_slow]
)
AUDIO = ["a.wav", "b c.wav", "sub/d.flac"]  # files that exist; tables may name others
bad_names = st.sampled_from(["missing.wav", "../up.wav", "/etc/passwd", "sub/../a.wav", "", "é ñ.wav", "a.wav\x00"])
bad_numbers = st.one_of(
    st.floats(-5, 20), st.sampled_from([float("nan"), float("inf"), -1, "", "x", "1e3", " 2 "]), st.integers(-3, 20)
)
cells = st.one_of(bad_numbers, st.sampled_from(["0", "1", "2", "frog", "toad", "", "NA", '"', ",", "\t"]), st.text(max_size=4))

good_spans = st.tuples(st.floats(0, 10), st.floats(0.01, 5)).map(lambda s: (s[0], s[0] + s[1]))
spans = st.one_of(good_spans, st.tuples(bad_numbers, bad_numbers))
names = st.one_of(st.sampled_from(AUDIO), bad_names)
labels = st.one_of(st.sampled_from([0, 1]), cells)


def in_folder(files: dict[str, str | bytes], read):
    """Write ``files`` into a fresh folder holding the :data:`AUDIO` files, then ``read(folder)``."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in AUDIO:
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(b"")
        for name, content in files.items():
            (root / name).write_bytes(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        try:
            return read(root)
        except Mix2Error as err:
            message = str(err)
            assert "\n" not in message and message.startswith(tmp), message
            return None


def check_clip_table(table: ClipTable | None) -> None:
    event("refused" if table is None else "read")
    if table is None:
        return
    clips = table.clips
    assert len(table) > 0 and table.labels.shape == (len(clips), len(table.classes))
    assert set(np.unique(table.labels)) <= {0, 1}
    assert ((clips["start_s"] >= 0) & (clips["end_s"] > clips["start_s"])).all()
    for file in clips["file"]:
        assert not file.startswith(("/", "../")) and ".." not in Path(file).parts, file
    assert not clips.duplicated(["file", "start_s", "end_s"]).any()


def to_csv(header: list[str], rows: list[list]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


@FUZZ
@given(
    header=st.lists(
        st.sampled_from(["file", "start_s", "end_s", "start_time", "frog", "toad", "split", "group", ""]), max_size=7
    ),
    rows=st.lists(st.lists(st.one_of(names, cells), max_size=7), max_size=8),
)
@example(header=[], rows=[["\n"]])  # a table whose only column is named by a quoted line break: still one line
def test_multihot_tables(header, rows):
    check_clip_table(in_folder({"labels.csv": to_csv(header, rows)}, lambda root: read_multihot(root / "labels.csv")))


@FUZZ
@given(rows=st.lists(st.tuples(names, spans, labels, labels), min_size=1, max_size=5))
def test_multihot_tables_with_the_right_columns(rows):
    text = to_csv(["file", "start_s", "end_s", "frog", "toad"], [[f, *span, a, b] for f, span, a, b in rows])
    check_clip_table(in_folder({"labels.csv": text}, lambda root: read_multihot(root / "labels.csv")))


@FUZZ
@given(
    rows=st.lists(
        st.tuples(st.sampled_from(AUDIO), good_spans, st.sampled_from([0, 1]), st.sampled_from([0, 1])), min_size=1, max_size=8
    )
)
def test_valid_multihot_tables_read_exactly(rows):
    """Valid rows are read as written: each clip once, with its labels; the same clip with two labellings is refused."""
    text = to_csv(["file", "start_s", "end_s", "frog", "toad"], [[f, *span, a, b] for f, span, a, b in rows])
    table = in_folder({"labels.csv": text}, lambda root: read_multihot(root / "labels.csv"))
    labellings = {}
    for file, (start, end), frog, toad in rows:
        labellings.setdefault((file, start, end), set()).add((frog, toad))
    if any(len(found) > 1 for found in labellings.values()):
        assert table is None
        return
    check_clip_table(table)
    read = {
        (f, s, e): tuple(row)
        for (f, s, e), row in zip(table.clips[["file", "start_s", "end_s"]].itertuples(index=False), table.labels)
    }
    assert read == {clip: found.pop() for clip, found in labellings.items()}


@FUZZ
@given(
    durations=st.lists(st.floats(0.01, 12), min_size=len(AUDIO), max_size=len(AUDIO)),
    events=st.lists(st.tuples(st.sampled_from(AUDIO), good_spans, st.sampled_from(["frog", "toad"])), min_size=1, max_size=6),
    window_s=st.sampled_from([0.5, 3.0]),
    hop_s=st.sampled_from([0.25, 1.0, 4.0]),
)
def test_valid_events_folders_window_every_recording(durations, events, window_s, hop_s):
    length = dict(zip(AUDIO, durations))
    files = {
        "recordings.csv": to_csv(["file", "duration_s"], [list(r) for r in zip(AUDIO, durations)]),
        "annotations.csv": to_csv(["file", "start_s", "end_s", "label"], [[f, *span, x] for f, span, x in events]),
    }
    table = in_folder(files, lambda root: read_events_folder(root, window_s, hop_s))
    if any(start >= length[file] - TIME_TOLERANCE_S for file, (start, _), _ in events):
        assert table is None  # an event that starts after its recording ends is refused
        return
    check_clip_table(table)
    for file in AUDIO:
        assert (table.clips["file"] == file).sum() == len(window_starts(length[file], window_s, hop_s))


VALID_TABLE = b"file,start_s,end_s,frog,toad\na.wav,0,3,1,0\nb c.wav,1.5,4.5,0,1\nsub/d.flac,0,3,1,1\n"


@FUZZ
@given(
    noise=st.binary(max_size=40), at=st.integers(0, len(VALID_TABLE)), cut=st.integers(0, len(VALID_TABLE)), whole=st.booleans()
)
def test_any_bytes_as_a_table(noise, at, cut, whole):
    """Random bytes, or a valid table with random bytes spliced in (and maybe cut short)."""
    content = noise if whole else (VALID_TABLE[:at] + noise + VALID_TABLE[at:])[: max(cut, at)]
    check_clip_table(in_folder({"labels.csv": content}, lambda root: read_multihot(root / "labels.csv")))
    in_folder({"a.selections.txt": content}, lambda root: read_raven_table(root / "a.selections.txt"))


@FUZZ
@given(
    recordings=st.lists(st.tuples(names, st.one_of(st.floats(0.01, 12), bad_numbers)), min_size=1, max_size=4),
    events=st.lists(st.tuples(names, spans, st.sampled_from(["frog", "toad", "frog", "toad", "", "a,b"])), max_size=5),
    window_s=st.sampled_from([0.5, 3.0]),
    hop_s=st.sampled_from([0.25, 1.0, 4.0]),
)
def test_events_folders(recordings, events, window_s, hop_s):
    files = {
        "recordings.csv": to_csv(["file", "duration_s"], [list(r) for r in recordings]),
        "annotations.csv": to_csv(["file", "start_s", "end_s", "label"], [[f, *span, x] for f, span, x in events]),
    }
    table = in_folder(files, lambda root: read_events_folder(root, window_s, hop_s))
    check_clip_table(table)
    if table is not None:  # every window lies inside its recording, or is the one padded window of a short one
        durations = {relative: float(d) for relative, d in _durations(recordings).items()}
        for file, group in table.clips.groupby("file"):
            assert (group["end_s"] <= durations[file] + TIME_TOLERANCE_S).all() or len(group) == 1


def _durations(recordings: list[tuple]) -> dict[str, float]:
    """The durations a valid recordings.csv gives, by normalised path (the first row of each file)."""
    found = {}
    for name, value in recordings:
        relative = os.path.normpath(str(name)).replace(os.sep, "/")
        found.setdefault(relative, pd.to_numeric(pd.Series([value]), errors="coerce")[0])
    return found


@FUZZ
@given(
    rows=st.lists(
        st.lists(st.one_of(cells, st.sampled_from(["Spectrogram 1", "Waveform 1"])), min_size=6, max_size=6), max_size=6
    ),
    header=st.permutations(["Selection", "View", "Begin Time (s)", "End Time (s)", "Species", "Begin File"]),
)
def test_raven_tables(rows, header):
    text = "\n".join("\t".join(map(str, row)) for row in [header, *rows]) + "\n"
    events = in_folder({"a.selections.txt": text}, lambda root: read_raven_table(root / "a.selections.txt"))
    if events is not None:
        assert {"start_s", "end_s", "label"} <= set(events.columns)


positive = st.floats(0.05, 50, allow_nan=False)


@FUZZ
@given(duration_s=st.floats(0.001, 5_000, allow_nan=False), window_s=positive, hop_s=positive)
def test_window_starts(duration_s, window_s, hop_s):
    starts = window_starts(duration_s, window_s, hop_s)
    assert starts[0] == 0 and np.allclose(np.diff(starts), hop_s, atol=1e-5)
    if duration_s <= window_s:
        assert starts.tolist() == [0.0]
    else:  # as many windows as fit, and not one more
        assert starts[-1] + window_s <= duration_s + 1e-5
        assert starts[-1] + hop_s + window_s > duration_s - 1e-5


@FUZZ
@given(duration_s=st.floats(0.001, 5_000, allow_nan=False), window_s=positive, hop_s=positive)
def test_recording_windows_cover_the_recording(duration_s, window_s, hop_s):
    windows = recording_windows(duration_s, window_s, hop_s)
    starts, ends = np.array(windows).T
    assert starts[0] == 0 and (np.diff(starts) > 0).all()
    assert (ends <= duration_s + 1e-9).all() and (ends - starts <= window_s + 1e-9).all() and (ends > starts).all()
    if hop_s <= window_s:  # no gaps (starts are rounded to the microsecond), and the last window reaches the end
        assert (starts[1:] <= ends[:-1] + TIME_TOLERANCE_S).all() and ends[-1] >= duration_s - 2 * TIME_TOLERANCE_S


@FUZZ
@given(
    starts=st.lists(st.floats(0, 30, allow_nan=False), min_size=1, max_size=6),
    events=st.lists(st.tuples(st.floats(0, 30, allow_nan=False), st.floats(0.001, 5), st.integers(0, 2)), max_size=6),
    window_s=st.floats(0.1, 5),
    min_overlap_s=st.floats(0, 3),
)
def test_window_labels_match_a_plain_loop(starts, events, window_s, min_overlap_s):
    frame = pd.DataFrame([(s, s + length, c) for s, length, c in events], columns=["start_s", "end_s", "class_index"]).astype(
        {"class_index": int}
    )
    labels = window_labels(np.array(starts), window_s, frame, 3, min_overlap_s)
    for w, start in enumerate(starts):
        for c in range(3):
            expected = any(
                (overlap := min(start + window_s, e_end) - max(start, e_start)) > 0
                and overlap >= min(min_overlap_s, e_end - e_start) - TIME_TOLERANCE_S
                for e_start, e_end, k in frame.itertuples(index=False)
                if k == c
            )
            assert labels[w, c] == expected
