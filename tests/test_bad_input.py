"""Bad input of every kind: each case is read, skipped and listed, or refused in one line naming the file.

The audio cases go through the training read path (an events folder, then the feature cache)
and through ``predict``; the table cases through each reader; a last test trains on a folder
that holds them all.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from conftest import write_tone
from mix2 import default_config, train
from mix2.config import FeatureConfig
from mix2.data.anuraset import ANURASET_SPECIES, METADATA_COLUMNS, read_anuraset
from mix2.data.audio import NOT_UTF8, read_audio
from mix2.data.events import read_events_folder
from mix2.data.multihot import read_multihot
from mix2.errors import Mix2Error
from mix2.features.cache import FeatureCache, extract_features
from mix2.predict import predict
from mix2.training import CachedClips

SR = 16_000
NON_UTF8_NAME = os.fsdecode(b"caf\xe9 chorus.wav")  # Latin-1 bytes, as old Windows archives hold them


def tone(seconds: float, sample_rate_hz: int = SR, channels: int = 1) -> np.ndarray:
    t = np.arange(round(seconds * sample_rate_hz)) / sample_rate_hz
    return np.repeat((0.3 * np.sin(2 * np.pi * 1_000 * t))[:, None], channels, axis=1)


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def write_bad_audio(folder: Path) -> dict[str, str]:
    """Every kind of unreadable audio; returns file name -> the reason it must be listed with."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "corrupt.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really a wav file at all")
    sf.write(folder / "zero_length.wav", np.zeros((0, 1)), SR)
    (folder / "notes.wav").write_text("field notes, saved with the wrong extension\n" * 20)
    (folder / "photo.flac").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    sf.write(folder / "truncated.flac", tone(10), SR)
    cut_in_half(folder / "truncated.flac")
    sf.write(folder / "truncated.mp3", tone(10), SR)  # its header still says 10 s
    cut_in_half(folder / "truncated.mp3")
    sf.write(folder / "nan.wav", np.full(SR, np.nan), SR, subtype="FLOAT")
    sf.write(folder / "loud.wav", np.full(SR, 1e30), SR, subtype="FLOAT")
    sf.write(folder / "renamed.wav", tone(3), SR)  # soundfile itself cannot open a non-UTF-8 name
    os.rename(folder / "renamed.wav", folder / NON_UTF8_NAME)
    return {
        "empty.wav": "unreadable audio",
        "corrupt.wav": "unreadable audio",
        "zero_length.wav": "the audio file holds no samples",
        "notes.wav": "unreadable audio",
        "photo.flac": "unreadable audio",
        "truncated.flac": "unreadable audio (Error : flac decoder lost sync.)",
        "truncated.mp3": "the audio ends at",
        "nan.wav": "the audio holds NaN or infinite samples",
        "loud.wav": "far beyond full scale (1.0): not audio",
        "caf\\xe9 chorus.wav": NOT_UTF8,
    }


FORMATS = {  # name -> (subtype, sample rate, channels)
    "pcm_u8.wav": ("PCM_U8", SR, 1),
    "pcm_24.wav": ("PCM_24", SR, 1),
    "float.wav": ("FLOAT", SR, 1),
    "rate_8k.wav": ("PCM_16", 8_000, 1),
    "rate_96k.wav": ("PCM_16", 96_000, 1),
    "stereo.wav": ("PCM_16", SR, 2),
    "six_channel.wav": ("PCM_16", SR, 6),
}


def write_good_audio(folder: Path, seconds: float = 3.0) -> list[str]:
    """A 1 kHz tone in every format, a silent file and a truncated WAV; returns the file names."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, (subtype, rate, channels) in FORMATS.items():
        sf.write(folder / name, tone(seconds, rate, channels), rate, subtype=subtype)
    sf.write(folder / "silence.wav", np.zeros(round(seconds * SR)), SR)
    sf.write(folder / "truncated.wav", tone(2 * seconds), SR)  # libsndfile reads the half that is there
    cut_in_half(folder / "truncated.wav")
    return [*FORMATS, "silence.wav", "truncated.wav"]


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_reads_as_the_same_mono_16k_tone(tmp_path, name):
    write_good_audio(tmp_path)
    samples = read_audio(tmp_path / name, SR)
    assert samples.dtype == np.float32 and samples.shape == (3 * SR,)
    spectrum = np.abs(np.fft.rfft(samples))
    assert np.argmax(spectrum) * SR / samples.size == pytest.approx(1_000, abs=1)
    # Same level whatever the depth, rate or channel count (8-bit quantises to 1/128).
    assert np.abs(samples[SR:-SR]).max() == pytest.approx(0.3, abs=0.01)


def test_the_training_read_path_lists_each_bad_file_and_keeps_the_good_ones(tmp_path):
    folder = tmp_path / "data"
    expected = write_bad_audio(folder)
    good = write_good_audio(folder)
    (folder / "classes.csv").write_text("label\nfrog\n")
    table = read_events_folder(folder)  # no recordings.csv and no events: every file is a recording
    cache = FeatureCache(tmp_path / "cache", FeatureConfig())
    paths, failures = extract_features(table, cache, 3.0, progress=False)
    listed = dict(table.failures + failures)
    assert set(listed) == set(expected)
    for name, reason in expected.items():
        assert reason in listed[name], name
        assert "\n" not in listed[name]
    readable = table.select(np.array([p is not None for p in paths]))
    assert sorted(set(readable.clips["file"])) == sorted(good)
    clips = CachedClips([p for p in paths if p is not None], readable.labels)
    features = {file: clips[i][0] for i, file in enumerate(readable.clips["file"])}
    assert all(np.isfinite(f.numpy()).all() and f.shape == (1, 128, 376) for f in features.values())
    assert float(features["silence.wav"].abs().max()) == 0.0  # silence: a constant log-mel, scaled to 0
    assert (readable.clips["file"] == "truncated.wav").sum() == 1  # 3 s of the 6 s are there: one window


def test_predict_lists_each_bad_file_and_scores_the_good_ones(checkpoint, tmp_path):
    folder = tmp_path / "recordings"
    expected = write_bad_audio(folder)
    good = write_good_audio(folder)
    scores = predict(checkpoint, [folder], tmp_path / "out", progress=False)
    failures = pd.read_csv(tmp_path / "out" / "failures.csv", encoding="utf-8")
    listed = dict(zip(failures["file"].map(lambda f: Path(f).name), failures["reason"]))
    assert set(listed) == set(expected)
    for name, reason in expected.items():
        assert reason in listed[name], name
    assert sorted({Path(f).name for f in scores["file"]}) == sorted(good)
    assert np.isfinite(scores.iloc[:, 3:].to_numpy()).all()
    assert (tmp_path / "out" / "scores.csv").read_bytes().decode("utf-8")  # every table stays valid UTF-8


def test_paths_with_spaces_and_accents_work_end_to_end(checkpoint, tmp_path):
    folder = tmp_path / "my recordings"
    write_tone(folder / "site A" / "frog call 1.wav", 5.0)
    write_tone(folder / "site A" / "rã-touro 2.wav", 4.0)
    pd.DataFrame({"file": ["site A/frog call 1.wav"], "start_s": [1.0], "end_s": [2.0], "label": ["frog"]}).to_csv(
        folder / "annotations.csv", index=False
    )
    table = read_events_folder(folder)
    assert sorted(set(table.clips["file"])) == ["site A/frog call 1.wav", "site A/rã-touro 2.wav"]
    paths, failures = extract_features(table, FeatureCache(tmp_path / "cache", FeatureConfig()), 3.0, progress=False)
    assert failures == [] and all(p is not None for p in paths)
    predict(checkpoint, [folder], tmp_path / "out put", progress=False)
    assert sorted(p.name for p in (tmp_path / "out put" / "raven").iterdir()) == [
        "frog call 1.selections.txt",
        "rã-touro 2.selections.txt",
    ]


# ---- label tables -------------------------------------------------------------------------------


def events_folder(tmp_path: Path, annotations: str, recordings: str = "file,duration_s\na.wav,10\nb.wav,10\n") -> Path:
    folder = tmp_path / "events"
    for name in ("a.wav", "b.wav"):
        write_tone(folder / name, 10.0)
    (folder / "recordings.csv").write_text(recordings)
    (folder / "annotations.csv").write_text(annotations)
    return folder


def refused(read, path_in_message: Path, problem: str) -> None:
    with pytest.raises(Mix2Error) as err:
        read()
    message = str(err.value)
    assert message.startswith(f"{path_in_message}: ") and problem in message and "\n" not in message, message


HEADER = "file,start_s,end_s,label\n"
EVENT_CASES = {
    "unknown class": (HEADER + "a.wav,1,2,frog\nb.wav,1,2,toad\n", "classes.csv", "unknown label 'toad'"),
    "negative time": (HEADER + "a.wav,-1,2,frog\n", "annotations.csv", "row 2: times must satisfy 0 <= start_s < end_s"),
    "reversed times": (HEADER + "a.wav,1,2,frog\na.wav,5,4,frog\n", "annotations.csv", "row 3: times must satisfy"),
    "not a number": (HEADER + "a.wav,one,2,frog\n", "annotations.csv", "row 2: 'start_s' is not a finite number ('one')"),
    "empty time": (HEADER + "a.wav,1,,frog\n", "annotations.csv", "row 2: 'end_s' is not a finite number (empty)"),
    "infinite time": (HEADER + "a.wav,1,inf,frog\n", "annotations.csv", "row 2: 'end_s' is not a finite number ('inf')"),
    "past the end": (HEADER + "a.wav,12,13,frog\n", "annotations.csv", "starts after its recording 'a.wav' ends (10.00 s)"),
    "missing column": ("file,start_s,end_s\na.wav,1,2\n", "annotations.csv", "missing column(s) label"),
    "hostile path": (HEADER + "../../etc/passwd,1,2,frog\n", "annotations.csv", "path '../../etc/passwd' points outside"),
}


@pytest.mark.parametrize("case", list(EVENT_CASES))
def test_bad_annotations_are_refused_in_one_line(tmp_path, case):
    annotations, named, problem = EVENT_CASES[case]
    folder = events_folder(tmp_path, annotations)
    if case == "unknown class":
        (folder / "classes.csv").write_text("label\nfrog\n")
        named = "annotations.csv"  # the table that holds the unknown label
    refused(lambda: read_events_folder(folder), folder / named, problem)


RECORDINGS_CASES = {
    "hostile absolute path": ("file,duration_s\n/etc/passwd,10\n", "points outside the data folder"),
    "conflicting duplicate": ("file,duration_s\na.wav,10\na.wav,12\n", "'a.wav' is listed twice with different durations"),
    "missing column": ("file\na.wav\n", "missing column(s) duration_s"),
    "zero duration": ("file,duration_s\na.wav,0\n", "row 2: 'duration_s' must be a positive finite number"),
}


@pytest.mark.parametrize("case", list(RECORDINGS_CASES))
def test_bad_recordings_tables_are_refused_in_one_line(tmp_path, case):
    recordings, problem = RECORDINGS_CASES[case]
    folder = events_folder(tmp_path, HEADER + "a.wav,1,2,frog\n", recordings)
    refused(lambda: read_events_folder(folder), folder / "recordings.csv", problem)


def test_duplicate_rows_count_once_and_events_may_run_past_the_end(tmp_path):
    folder = events_folder(
        tmp_path, HEADER + "a.wav,1,2,frog\na.wav,1,2,frog\na.wav,8.5,11,frog\n", "file,duration_s\na.wav,10\na.wav,10\n"
    )
    table = read_events_folder(folder)
    assert len(table) == 8 and table.labels[:, 0].tolist() == [1, 1, 0, 0, 0, 0, 1, 1]  # windows 0..7 of 10 s


def test_a_table_longer_than_its_audio_fails_that_recording(tmp_path):
    """recordings.csv says 20 s, the file holds 10: the windows past 10 s would be silence labelled as calls."""
    folder = events_folder(tmp_path, HEADER + "a.wav,15,16,frog\n", "file,duration_s\na.wav,20\nb.wav,10\n")
    table = read_events_folder(folder)
    paths, failures = extract_features(table, FeatureCache(tmp_path / "cache", FeatureConfig()), 3.0, progress=False)
    assert failures == [
        (
            "a.wav",
            "the audio ends at 10.00 s, before a clip that starts at 10.00 s (a truncated file, or a table with the wrong times)",
        )
    ]
    assert all(p is not None for p, f in zip(paths, table.clips["file"]) if f == "b.wav")


def test_raven_tables_bad_and_good(tmp_path):
    folder = tmp_path / "raven"
    write_tone(folder / "a.wav", 10.0)
    header = "Selection\tView\tChannel\tBegin Time (s)\tEnd Time (s)\tSpecies\n"
    table = folder / "a.selections.txt"
    table.write_text(header + "1\tSpectrogram 1\t1\t2.0\t1.0\tfrog\n")
    refused(lambda: read_events_folder(folder), folder, "row 2: times must satisfy 0 <= start_s < end_s")
    table.write_text("Selection\tBegin Time (s)\tSpecies\n1\t1.0\tfrog\n")
    refused(lambda: read_events_folder(folder), table, "missing column(s) End Time (s)")
    table.write_text(header + "1\tSpectrogram 1\t1\t1.0\t2.0\tfrog\n1\tWaveform 1\t1\t1.0\t2.0\tfrog\n")
    assert read_events_folder(folder).labels.sum() == 2  # once per window it overlaps, not once per view


def write_multihot(tmp_path: Path, rows: str) -> Path:
    write_tone(tmp_path / "a.wav", 10.0)
    path = tmp_path / "labels.csv"
    path.write_text("file,start_s,end_s,frog,toad\n" + rows)
    return path


MULTIHOT_CASES = {
    "conflicting duplicate": (
        "a.wav,0,3,1,0\na.wav,3,6,0,0\na.wav,0,3,0,1\n",
        "rows 2 and 4 give the clip a.wav 0.0-3.0 s different labels",
    ),
    "reversed times": ("a.wav,3,0,1,0\n", "row 2: times must satisfy 0 <= start_s < end_s"),
    "negative time": ("a.wav,-3,0,1,0\n", "row 2: times must satisfy"),
    "not binary": ("a.wav,0,3,2,0\n", "class columns must hold only 0 and 1"),
    "hostile path": ("../../etc/passwd,0,3,1,0\n", "points outside the data folder"),
}


@pytest.mark.parametrize("case", list(MULTIHOT_CASES))
def test_bad_multihot_tables_are_refused_in_one_line(tmp_path, case):
    rows, problem = MULTIHOT_CASES[case]
    path = write_multihot(tmp_path, rows)
    refused(lambda: read_multihot(path), path, problem)


def test_multihot_duplicates_count_once_and_clips_past_the_end_fail_their_file(tmp_path):
    path = write_multihot(tmp_path, "a.wav,0,3,1,0\na.wav,0,3,1,0\na.wav,12,15,0,1\n")
    table = read_multihot(path)
    assert len(table) == 2
    _, failures = extract_features(table, FeatureCache(tmp_path / "cache", FeatureConfig()), 3.0, progress=False)
    assert failures[0][0] == "a.wav" and "before a clip that starts at 12.00 s" in failures[0][1]
    (tmp_path / "missing.csv").write_text("file,start_s\na.wav,0\n")
    refused(lambda: read_multihot(tmp_path / "missing.csv"), tmp_path / "missing.csv", "missing column(s) end_s")


def write_anuraset(tmp_path: Path, rows: list[dict]) -> Path:
    root = tmp_path / "anuraset"
    for row in rows:
        if ".." not in row["site"]:
            write_tone(root / "audio" / row["site"] / f"{row['sample_name']}.wav", 3.0)
    (root / "audio").mkdir(parents=True, exist_ok=True)
    frame = pd.DataFrame([{**dict.fromkeys(ANURASET_SPECIES, 0), **row} for row in rows])
    frame[METADATA_COLUMNS + ANURASET_SPECIES].to_csv(root / "metadata.csv", index=False)
    return root


def anura_row(name: str, site: str = "INCT4", **species) -> dict:
    return {
        "sample_name": name,
        "fname": name.rsplit("_", 2)[0],
        "min_t": 0,
        "max_t": 3,
        "site": site,
        "subset": "train",
        **species,
    }


def test_anuraset_duplicates_hostile_paths_and_missing_columns(tmp_path):
    rows = [anura_row("INCT4_20191029_0_3", SPHSUR=1), anura_row("INCT4_20191029_0_3", SPHSUR=1), anura_row("INCT4_20191029_3_6")]
    root = write_anuraset(tmp_path / "dup", rows)
    assert len(read_anuraset(root)) == 2
    rows[1]["BOABIS"] = 1
    root = write_anuraset(tmp_path / "conflict", rows)
    refused(lambda: read_anuraset(root), root / "metadata.csv", "rows 2 and 3 give the clip audio/INCT4/INCT4_20191029_0_3.wav")
    root = write_anuraset(tmp_path / "hostile", [anura_row("passwd", site="../../../etc")])
    refused(lambda: read_anuraset(root), root / "metadata.csv", "points outside the data folder")
    (root / "metadata.csv").write_text("sample_name,site\nx,INCT4\n")
    refused(lambda: read_anuraset(root), root / "metadata.csv", "missing column(s) fname, min_t, max_t, subset")


@pytest.mark.slow
def test_training_on_a_messy_folder_lists_every_bad_file_and_finishes(tmp_path):
    folder = tmp_path / "messy"
    expected = write_bad_audio(folder)
    for i in range(12):  # enough readable recordings for train, validation and test
        write_tone(folder / f"frog_{i:02d}.wav", 6.0, frequency_hz=800 + 50 * i)
    rows = [(f"frog_{i:02d}.wav", 1.0, 2.5, "frog" if i % 2 else "toad") for i in range(12)]
    pd.DataFrame(rows, columns=["file", "start_s", "end_s", "label"]).to_csv(folder / "annotations.csv", index=False)
    config = default_config(str(folder))
    config.train.epochs, config.train.batch_size, config.out_dir = 1, 8, str(tmp_path / "runs")
    run_dir = train(config, progress=False)
    failures = pd.read_csv(run_dir / "failures.csv", encoding="utf-8")
    assert dict(zip(failures["file"], failures["reason"])).keys() == expected.keys()
    assert json.loads((run_dir / "metrics.json").read_text())["clips"] > 0
    shutil.rmtree(run_dir)
