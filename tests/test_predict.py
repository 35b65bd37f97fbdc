"""Predict on real frog recordings: exact windows, scores equal to a clip scored alone, resume, failures."""

import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from conftest import FOUR_CLASSES, shared_data, write_tone
from mix2 import engines
from mix2.cli import main
from mix2.config import FeatureConfig
from mix2.data.audio import fit_length, read_audio, read_blocks, read_windows
from mix2.data.clips import ClipTable
from mix2.data.events import read_raven_table
from mix2.errors import Mix2Error
from mix2.features.cache import FeatureCache, extract_features
from mix2.features.frontend import FrontEnd
from mix2.inference import InferenceModel, load_trained_model
from mix2.predict import (
    PredictState,
    WindowScorer,
    detections,
    merge_predictions,
    predict,
    recording_windows,
    thresholds_from,
)
from mix2.training import CachedClips

CLASSES = FOUR_CLASSES
CACHE_TOLERANCE = 5e-5
"""How far a window's score in predict may lie from the same clip's score through the feature cache: float rounding."""
BF16_TOLERANCE = {"torch": 0.05, "openvino": 0.1}
"""The largest difference between a bf16 and an fp32 score accepted, per engine (the README's promise): PyTorch's
autocast keeps batch norm apart; OpenVINO's runs it folded into the weights, rounded to bf16 (0.057 seen here)."""


@pytest.fixture(scope="module")
def frogs_scores(checkpoint):
    """Every frog window's scores, each window transformed alone as in evaluation."""
    return predict(checkpoint, [shared_data("frogs")], exact_windows=True, progress=False)


def test_window_times_are_exact_and_the_tail_is_covered_by_a_padded_window():
    assert recording_windows(60.0, 3.0, 1.0)[-1] == (57.0, 60.0) and len(recording_windows(60.0, 3.0, 1.0)) == 58
    assert recording_windows(44.6, 3.0, 1.0)[-2:] == [(41.0, 44.0), (42.0, 44.6)]
    assert recording_windows(2.0, 3.0, 1.0) == [(0.0, 2.0)]
    assert recording_windows(4.0, 3.0, 0.5) == [(0.0, 3.0), (0.5, 3.5), (1.0, 4.0)]
    assert recording_windows(7.0, 3.0, 5.0) == [(0.0, 3.0), (5.0, 7.0)] and recording_windows(4.0, 3.0, 5.0) == [(0.0, 3.0)]


def test_every_recording_gets_its_windows_in_order(frogs_scores):
    files = sorted(p for p in shared_data("frogs").rglob("*") if p.suffix in {".wav", ".flac", ".mp3"})
    assert list(dict.fromkeys(frogs_scores["file"])) == [str(p) for p in files]
    for path in files:
        info = sf.info(str(path))
        rows = frogs_scores[frogs_scores["file"] == str(path)]
        expected = recording_windows(info.frames / info.samplerate, 3.0, 1.0)
        assert list(zip(rows["start_s"], rows["end_s"])) == expected, path.name
    assert list(frogs_scores.columns) == ["file", "start_s", "end_s", *CLASSES]
    assert len(frogs_scores[frogs_scores["file"].str.endswith("rfcx_f97ababc1.flac")]) == 58


def test_a_window_scores_as_the_same_clip_scored_alone(checkpoint, frogs_scores):
    module = load_trained_model(checkpoint)
    scorer = WindowScorer(module, checkpoint)
    frogs = shared_data("frogs")
    for name, start_s in [("great_plains_toad.wav", 17.0), ("great_plains_toad.wav", 42.0), ("rfcx_f97ababc1.flac", 30.0),
                          ("se_us/hyla-cinerea.mp3", 2.0), ("Physalaemus_cuvieri.wav", 0.0)]:  # fmt: skip
        clip = fit_length(read_audio(frogs / name, 16_000, start_s, 3.0), 48_000)
        alone = scorer(torch.from_numpy(clip[None]))[0]
        row = frogs_scores[(frogs_scores["file"] == str(frogs / name)) & (frogs_scores["start_s"] == start_s)]
        # Float rounding only: a batch of 64 and a batch of one sum in other orders (1.4e-5 seen with 2 threads).
        np.testing.assert_allclose(row[CLASSES].to_numpy()[0], alone, atol=5e-5, err_msg=f"{name} at {start_s} s")
    assert frogs_scores[CLASSES].to_numpy().std(axis=0).min() > 0.01  # the scores really vary between windows


@pytest.mark.parametrize("engine", ["torch", "openvino"])
def test_bf16_scores_stay_within_the_stated_tolerance_of_fp32(checkpoint, engine):
    soundscape = shared_data("frogs") / "rfcx_f97ababc1.flac"
    fp32 = predict(checkpoint, [soundscape], progress=False)
    if not engines.installed(engine):
        pytest.skip(f"{engine} is not installed")
    bf16 = predict(checkpoint, [soundscape], precision="bf16", engine=engine, progress=False)
    difference = np.abs(fp32[CLASSES].to_numpy() - bf16[CLASSES].to_numpy())
    assert 0 < difference.max() <= BF16_TOLERANCE[engine]


def test_multichannel_audio_is_mixed_to_mono_as_in_training(checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    stereo = rng.normal(scale=0.1, size=(44_100 * 5, 2)).astype(np.float32)
    sf.write(tmp_path / "stereo.wav", stereo, 44_100, subtype="FLOAT")
    sf.write(tmp_path / "mono.wav", stereo.mean(axis=1), 44_100, subtype="FLOAT")
    scores = predict(checkpoint, [tmp_path / "stereo.wav", tmp_path / "mono.wav"], progress=False)
    both = scores[CLASSES].to_numpy()
    np.testing.assert_allclose(both[:3], both[3:], atol=1e-4)


def test_resuming_after_a_kill_gives_the_same_tables(checkpoint, tmp_path, monkeypatch):
    frogs = shared_data("frogs")
    predict(checkpoint, [frogs], tmp_path / "whole", batch_size=16, progress=False)
    recorded, original = [], PredictState.record

    def killed_after_five(self, path, frame):
        if len(recorded) == 5:
            raise KeyboardInterrupt
        recorded.append(path)
        return original(self, path, frame)

    monkeypatch.setattr(PredictState, "record", killed_after_five)
    with pytest.raises(KeyboardInterrupt):
        predict(checkpoint, [frogs], tmp_path / "resumed", batch_size=16, progress=False)
    monkeypatch.setattr(PredictState, "record", original)
    assert (
        not (tmp_path / "resumed" / "scores.csv").exists()
        and len((tmp_path / "resumed" / "done.jsonl").read_text().splitlines()) == 5
    )
    with open(tmp_path / "resumed" / "done.jsonl", "a") as done:
        done.write('{"file": "cut short by the ki')  # a line the kill cut in half is ignored
    again = []
    monkeypatch.setattr(PredictState, "record", lambda self, path, frame: again.append(path) or original(self, path, frame))
    predict(checkpoint, [frogs], tmp_path / "resumed", batch_size=16, progress=False)
    assert len(again) == 17 - 5 and not set(again) & set(recorded)  # only the recordings not done before
    listed = [line for line in (tmp_path / "resumed" / "done.jsonl").read_text().splitlines() if line.endswith("}")]
    assert len({json.loads(line)["file"] for line in listed}) == 17  # the entry after the cut line is whole too
    for name in ["scores.csv", "detections.csv", "failures.csv"]:
        assert (tmp_path / "resumed" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name
    with pytest.raises(Mix2Error, match="predict.json: this folder holds a prediction with other settings \\(hop_s, windows\\)"):
        predict(checkpoint, [frogs], tmp_path / "resumed", hop_s=0.5, progress=False)


def test_a_corrupt_or_empty_recording_is_listed_and_skipped(checkpoint, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(shared_data("frogs") / "Physalaemus_kroyeri.wav", folder)
    (folder / "corrupt.wav").write_bytes(b"RIFF" + os.urandom(2000))
    sf.write(folder / "empty.flac", np.zeros((0, 1)), 16_000)
    write_tone(folder / "tone.flac", 4.0, 22_050)
    scores = predict(checkpoint, [folder], tmp_path / "out", progress=False)
    assert set(scores["file"]) == {str(folder / "Physalaemus_kroyeri.wav"), str(folder / "tone.flac")}
    failures = pd.read_csv(tmp_path / "out" / "failures.csv")
    reasons = dict(zip(failures["file"], failures["reason"]))
    assert reasons[str(folder / "corrupt.wav")].startswith("unreadable audio (") and len(reasons) == 2
    assert reasons[str(folder / "empty.flac")].startswith(("the audio file holds no samples", "unreadable audio ("))
    assert scores.attrs["failures"] == 2
    assert not (tmp_path / "out" / "raven" / "corrupt.selections.txt").exists()


def test_detections_merge_overlapping_and_touching_windows_per_species():
    scores = pd.DataFrame(
        {"file": ["a"] * 5 + ["b"] * 2 + ["c"] * 5, "start_s": [0.0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 4],
         "end_s": [3.0, 4, 5, 6, 6.5, 3, 3.5, 3, 4, 5, 6, 7],
         "x": [0.9, 0.8, 0.1, 0.7, 0.95, 0.2, 0.6, 0.9, 0.1, 0.1, 0.1, 0.8],
         "y": [0.1, 0.6, 0.6, 0.6, 0.1, 0.9, 0.1, 0.9, 0.1, 0.1, 0.7, 0.1]}
    )  # fmt: skip
    found = detections(scores, np.array([0.5, 0.5]))
    # a/x: 0-3 and 1-4 over, 2-5 under, 3-6 and 4-6.5 over: 3-6 overlaps 1-4, so one detection, never two
    # overlapping boxes; c/x: 0-3 and 4-7 do not touch, two detections; c/y: 0-3 and 3-6 touch, one.
    assert found.values.tolist() == [
        ["a", "x", 0.0, 6.5, 0.95], ["a", "y", 1.0, 6.0, 0.6],
        ["b", "y", 0.0, 3.0, 0.9], ["b", "x", 1.0, 3.5, 0.6],
        ["c", "x", 0.0, 3.0, 0.9], ["c", "y", 0.0, 6.0, 0.9], ["c", "x", 4.0, 7.0, 0.8],
    ]  # fmt: skip
    for _, species in found.groupby(["file", "species"]):  # no two detections of one species overlap
        assert (species["start_s"].to_numpy()[1:] > species["end_s"].to_numpy()[:-1]).all()
    assert detections(scores, np.array([0.99, 0.99])).empty


def test_thresholds_from_a_csv_a_number_or_the_checkpoint(checkpoint, tmp_path, frogs_scores):
    (tmp_path / "t.csv").write_text("class,threshold\nfrog_a,0.1\nfrog_b,0.2\ntoad_c,0.3\ntoad_d,0.4\n")
    assert thresholds_from(CLASSES, tmp_path / "t.csv").tolist() == [0.1, 0.2, 0.3, 0.4]
    assert thresholds_from(CLASSES, 0.7).tolist() == [0.7] * 4
    (tmp_path / "bad.csv").write_text("class,threshold\nfrog_a,0.1\n")
    with pytest.raises(Mix2Error, match="bad.csv: no threshold for 3 class\\(es\\), e.g. 'frog_b'"):
        thresholds_from(CLASSES, tmp_path / "bad.csv")
    predict(
        checkpoint, [shared_data("frogs") / "great_plains_toad.wav"], tmp_path / "out", thresholds="checkpoint", progress=False
    )
    found = pd.read_csv(tmp_path / "out" / "detections.csv")
    rows = frogs_scores[frogs_scores["file"].str.endswith("great_plains_toad.wav")]
    assert set(found["species"]) == {c for c, t in zip(CLASSES, [0.5, 0.9, 0.3, 0.99]) if (rows[c] >= t).any()}


def test_raven_tables_read_back_as_the_detections(checkpoint, tmp_path):
    predict(checkpoint, [shared_data("frogs") / "rfcx_f97ababc1.flac"], tmp_path / "out", progress=False)  # 0.5
    found = pd.read_csv(tmp_path / "out" / "detections.csv")
    raven = tmp_path / "out" / "raven" / "rfcx_f97ababc1.selections.txt"
    header = raven.read_text().splitlines()[0].split("\t")
    assert header[:7] == ["Selection", "View", "Channel", "Begin Time (s)", "End Time (s)", "Low Freq (Hz)", "High Freq (Hz)"]
    events = read_raven_table(raven)
    assert len(events) == len(found) > 0
    assert sorted(zip(events["label"], events["start_s"], events["end_s"])) == sorted(
        zip(found["species"], found["start_s"], found["end_s"])
    )


def test_cli_predict_writes_csv_parquet_and_raven(checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["predict", str(checkpoint), str(shared_data("frogs") / "se_us"), "--out", str(out), "--parquet", "--quiet"]
    assert main(argv) == 0
    assert "h of audio per minute" in capsys.readouterr().out
    csv = pd.read_csv(out / "scores.csv")
    parquet = pd.read_parquet(out / "scores.parquet")
    assert len(csv) == len(parquet) > 0 and list(parquet.columns) == ["file", "start_s", "end_s", *CLASSES]
    np.testing.assert_allclose(csv[CLASSES].to_numpy(), parquet[CLASSES].to_numpy(), atol=1e-6)
    assert len(list((out / "raven").glob("*.selections.txt"))) == 12
    assert main(["predict", str(checkpoint), str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"mix2: error: {tmp_path / 'nowhere'}: no such file or folder"


def test_checkpoints_load_safely(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"hyper_parameters": Payload(), "state_dict": {}}, tmp_path / "evil.ckpt")
    with pytest.raises(
        Mix2Error,
        match="evil.ckpt: not a mix2 checkpoint: it holds Python objects beyond tensors and plain data, and mix2 never runs code",
    ):
        load_trained_model(tmp_path / "evil.ckpt")
    assert not (tmp_path / "pwned").exists()


def test_audio_is_read_in_bounded_blocks_with_the_same_scores(checkpoint, frogs_scores, monkeypatch):
    import mix2.data.audio

    soundscape = shared_data("frogs") / "rfcx_f97ababc1.flac"
    reads, original = [], sf.SoundFile.read
    monkeypatch.setattr(sf.SoundFile, "read", lambda self, frames=-1, **kw: reads.append(frames) or original(self, frames, **kw))
    monkeypatch.setattr(mix2.data.audio, "BLOCK_S", 5.0)
    small_blocks = predict(checkpoint, [soundscape], exact_windows=True, progress=False)
    rate = sf.info(str(soundscape)).samplerate
    assert len(reads) >= 60 / 5 and 0 < max(reads) <= 5 * rate  # never more than 5 s of the 60 s at once
    whole = frogs_scores[frogs_scores["file"] == str(soundscape)].reset_index(drop=True)
    np.testing.assert_allclose(small_blocks[CLASSES].to_numpy(), whole[CLASSES].to_numpy(), atol=1e-5)


@pytest.fixture(scope="module")
def sharded_frogs(checkpoint, tmp_path_factory):
    """The frog recordings predicted whole, and in 3 shards; returns the folder holding ``whole`` and ``shard1..3``."""
    folder, frogs = tmp_path_factory.mktemp("shards"), shared_data("frogs")
    predict(checkpoint, [frogs], folder / "whole", batch_size=16, progress=False)
    for index in (1, 2, 3):
        main(["predict", str(checkpoint), str(frogs), "--out", str(folder / f"shard{index}"), "--batch-size", "16",
              "--shard", f"{index}/3", "--quiet"])  # fmt: skip
    return folder


def test_shards_cover_every_recording_exactly_once(sharded_frogs):
    files = [set(pd.read_csv(sharded_frogs / f"shard{i}" / "scores.csv")["file"]) for i in (1, 2, 3)]
    whole = set(pd.read_csv(sharded_frogs / "whole" / "scores.csv")["file"])
    assert sum(map(len, files)) == len(whole) == 17 and set.union(*files) == whole
    assert all(files)  # 17 recordings hash into all three shards


def test_merged_shards_are_the_unsharded_prediction(sharded_frogs, capsys):
    shards = [str(sharded_frogs / f"shard{i}") for i in (3, 1, 2)]  # in any order
    assert main(["merge", *shards, "--out", str(sharded_frogs / "merged")]) == 0
    assert "from 3 shards" in capsys.readouterr().out
    merged, whole = sharded_frogs / "merged", sharded_frogs / "whole"
    for name in ["scores.csv", "detections.csv", "failures.csv"]:
        assert (merged / name).read_bytes() == (whole / name).read_bytes(), name
    raven = sorted(p.name for p in (whole / "raven").iterdir())
    assert raven == sorted(p.name for p in (merged / "raven").iterdir()) and len(raven) == 17
    assert all((merged / "raven" / n).read_bytes() == (whole / "raven" / n).read_bytes() for n in raven)


def test_merge_refuses_missing_repeated_unfinished_or_foreign_shards(sharded_frogs, checkpoint, tmp_path):
    shard = [sharded_frogs / f"shard{i}" for i in (1, 2, 3)]
    with pytest.raises(Mix2Error, match="shards 1 to 3 of one prediction, each once; missing 2"):
        merge_predictions([shard[0], shard[2]], tmp_path / "out")
    with pytest.raises(Mix2Error, match="given twice 1"):
        merge_predictions([shard[0], shard[0], shard[1], shard[2]], tmp_path / "out")
    with pytest.raises(Mix2Error, match="not sharded"):
        merge_predictions([sharded_frogs / "whole"], tmp_path / "out")
    unfinished = tmp_path / "unfinished"
    shutil.copytree(shard[1], unfinished)
    record = json.loads((unfinished / "predict.json").read_text())
    del record["finished"]
    (unfinished / "predict.json").write_text(json.dumps(record))
    with pytest.raises(Mix2Error, match=f"{unfinished}: shard 2/3 has not finished; run its job again"):
        merge_predictions([shard[0], unfinished, shard[2]], tmp_path / "out")
    record.update(finished=True, hop_s=0.5)
    (unfinished / "predict.json").write_text(json.dumps(record))
    with pytest.raises(Mix2Error, match=r"is not a shard of the same prediction as .* \(hop_s differ\)"):
        merge_predictions([shard[0], unfinished, shard[2]], tmp_path / "out")
    with pytest.raises(SystemExit):
        main(["predict", str(checkpoint), str(shard[0]), "--shard", "4/3"])


def cached_and_predicted(checkpoint, frogs_scores, tmp_path, clips):
    """Each clip's scores through evaluation's path (the cache: a recording's span decoded and resampled once, the
    clips cut from it, then CachedClips) and through predict's (each window read and resampled alone)."""
    trained = load_trained_model(checkpoint)
    frogs = shared_data("frogs")
    frame = pd.DataFrame({"file": [f for f, _ in clips], "start_s": [s for _, s in clips], "end_s": [s + 3 for _, s in clips]})
    table = ClipTable(frame.assign(group=frame["file"], split="test"), np.zeros((len(clips), len(CLASSES))), CLASSES, frogs)
    paths, failures = extract_features(table, FeatureCache(tmp_path, trained.config.features), 3.0, progress=False)
    assert not failures
    inputs = torch.stack([CachedClips(paths, table.labels, trained.config.features.top_db)[i][0] for i in range(len(clips))])
    with torch.inference_mode():
        cached = torch.sigmoid(InferenceModel(trained)(inputs)).numpy()
    rows = [frogs_scores[(frogs_scores["file"] == str(frogs / f)) & (frogs_scores["start_s"] == s)] for f, s in clips]
    return cached, np.stack([row[CLASSES].to_numpy()[0] for row in rows])


def test_a_window_scores_as_the_same_clip_read_through_the_feature_cache(checkpoint, frogs_scores, tmp_path):
    starts = {"great_plains_toad.wav": (0.0, 17.0, 18.0, 30.0, 41.0), "rfcx_f97ababc1.flac": (30.0, 45.0, 57.0)}
    clips = [(name, start_s) for name, file_starts in starts.items() for start_s in file_starts]
    cached, predicted = cached_and_predicted(checkpoint, frogs_scores, tmp_path, clips)
    np.testing.assert_allclose(predicted, cached, atol=CACHE_TOLERANCE)


def test_windows_cut_from_a_block_are_the_windows_transformed_alone():
    front_end = FrontEnd(FeatureConfig())
    torch.manual_seed(0)
    audio = torch.randn(16_000 * 9) * torch.linspace(0.01, 1.0, 16_000 * 9)  # loud ends: any leak past an edge shows
    audio[-16_000:] = 0  # and a tail window's zero padding, as read_blocks pads past a recording's end
    offsets = [0, 16_000, 32_000, 64_000, 96_000]
    alone = front_end(torch.stack([audio[offset : offset + 48_000] for offset in offsets]))
    assert torch.equal(front_end.windows_of_block(audio, offsets, 48_000), alone)
    with pytest.raises(ValueError, match="multiples of the hop"):
        front_end.windows_of_block(audio, [8_000], 48_000)


def test_predict_cuts_windows_from_blocks_exactly_at_the_models_rate(checkpoint, tmp_path):
    at_model_rate = write_tone(tmp_path / "tone16k.wav", 20.0, 16_000, frequency_hz=1_500.0)
    block = predict(checkpoint, [at_model_rate], tmp_path / "block", progress=False)
    assert json.loads((tmp_path / "block" / "predict.json").read_text())["windows"] == "block"
    exact = predict(checkpoint, [at_model_rate], exact_windows=True, progress=False)
    np.testing.assert_allclose(block[CLASSES].to_numpy(), exact[CLASSES].to_numpy(), atol=1e-6)
    predict(checkpoint, [at_model_rate], tmp_path / "half", hop_s=0.5, progress=False)  # 62.5 hops: no frame boundary
    assert json.loads((tmp_path / "half" / "predict.json").read_text())["windows"] == "exact"
    with pytest.raises(Mix2Error, match="other settings \\(windows\\); use a new folder; to go on, leave out --exact-windows"):
        predict(checkpoint, [at_model_rate], tmp_path / "block", exact_windows=True, progress=False)


def test_a_resampled_window_cut_from_its_block_differs_only_in_its_edge_frames():
    """A block is resampled whole and a window alone, and the resampler's edge moves the two outermost frames.

    Scores of trained NIPS4B networks over these recordings moved by 0.0044 at most (README, Predict).
    """
    front_end, frogs = FrontEnd(FeatureConfig()), shared_data("frogs")
    for name in ["great_plains_toad.wav", "rfcx_f97ababc1.flac", "se_us/pseudacris-crucifer.mp3"]:
        starts = [start for start, _ in recording_windows(sf.info(str(frogs / name)).duration, 3.0, 1.0)]
        alone = front_end(torch.from_numpy(np.stack(list(read_windows(frogs / name, starts, 3.0, 16_000)))))
        cut = torch.cat(
            [
                front_end.windows_of_block(torch.from_numpy(audio), [round((s - block[0]) * 16_000) for s in block], 48_000)
                for block, audio in read_blocks(frogs / name, starts, 3.0, 16_000)
            ]
        )
        inner = (alone - cut)[..., 2:-2].abs()
        assert inner.max() < 0.01 and inner.mean() < 1e-3, name  # float16 steps apart, and a trace of the resampler
        assert (alone - cut)[..., [0, 1, -2, -1]].abs().max() > 0.1, name  # where the window's own resampler edge is
