"""mix2 embed on real frog recordings: predict's windows, the classifier's own input, a resumable folder."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FOUR_CLASSES, shared_data
from mix2.cli import main
from mix2.engines import load_engine
from mix2.errors import Mix2Error
from mix2.inference import load_trained_model
from mix2.predict import embed, merge_embeddings, merge_shards, predict, shard_of
from mix2.predict.embed import EmbedState


@pytest.fixture(scope="module")
def frogs_embedded(checkpoint):
    return embed(checkpoint, [shared_data("frogs")], engine="torch", progress=False)


def test_each_window_of_predict_gets_the_embedding_the_classifier_scores(checkpoint, frogs_embedded):
    windows, vectors = frogs_embedded
    scores = predict(checkpoint, [shared_data("frogs")], engine="torch", progress=False)
    pd.testing.assert_frame_equal(windows, scores[["file", "start_s", "end_s"]])  # the same windows, in the same order
    assert vectors.shape == (len(scores), 960) and vectors.dtype == np.float32
    classifier = load_trained_model(checkpoint).network.classifier
    with torch.no_grad():
        from_embedding = torch.sigmoid(classifier(torch.from_numpy(vectors))).numpy()
    np.testing.assert_allclose(from_embedding, scores[FOUR_CLASSES].to_numpy(), atol=1e-5)
    assert vectors.std(axis=0).max() > 0.01  # windows differ


def test_an_embedding_does_not_depend_on_the_batch_it_was_computed_in_beyond_float_rounding(checkpoint, frogs_embedded):
    recording = shared_data("frogs") / "great_plains_toad.wav"
    windows, vectors = frogs_embedded
    _, alone_vectors = embed(checkpoint, [recording], batch_size=3, engine="torch", progress=False)
    rows = (windows["file"] == str(recording)).to_numpy()
    scale = np.abs(vectors).max()  # the untrained network's embedding runs to some hundreds
    np.testing.assert_allclose(alone_vectors, vectors[rows], rtol=0, atol=1e-4 * scale)


@pytest.mark.parametrize("engine", ["onnxruntime", "openvino"])
def test_the_exported_engines_embed_as_pytorch_does_and_a_folder_keeps_its_engine(checkpoint, frogs_embedded, engine, tmp_path):
    pytest.importorskip(engine)
    recording = shared_data("frogs") / "great_plains_toad.wav"
    windows, vectors = frogs_embedded
    embedded_windows, embedded = embed(checkpoint, [recording], tmp_path / "out", engine=engine, progress=False)
    rows = (windows["file"] == str(recording)).to_numpy()
    pd.testing.assert_frame_equal(embedded_windows, windows[rows].reset_index(drop=True))
    np.testing.assert_allclose(embedded, vectors[rows], rtol=0, atol=1e-4 * np.abs(vectors).max())
    assert list(checkpoint.parent.glob(f"{checkpoint.stem}.*.embedding.onnx"))  # the network up to its embedding, exported
    assert json.loads((tmp_path / "out" / "embed.json").read_text())["engine"] == engine
    with pytest.raises(Mix2Error, match=f"other settings \\(engine\\); use a new folder; to go on, pass --engine {engine}"):
        embed(checkpoint, [recording], tmp_path / "out", engine="torch", progress=False)
    with pytest.raises(Mix2Error, match="int8 networks give logits only"):
        load_engine(load_trained_model(checkpoint), checkpoint, engine, precision="int8", stop="embedding")


def test_the_folder_holds_the_arrays_and_tables_and_resumes_after_a_kill(checkpoint, frogs_embedded, tmp_path, monkeypatch):
    frogs = shared_data("frogs")
    recorded, original = [], EmbedState.record

    def killed_after_four(self, path, windows, vectors):
        if len(recorded) == 4:
            raise KeyboardInterrupt
        recorded.append(path)
        return original(self, path, windows, vectors)

    monkeypatch.setattr(EmbedState, "record", killed_after_four)
    with pytest.raises(KeyboardInterrupt):
        embed(checkpoint, [frogs], tmp_path / "out", engine="torch", parquet=True, progress=False)
    assert not (tmp_path / "out" / "embeddings.npy").exists()
    again = []
    monkeypatch.setattr(EmbedState, "record", lambda self, p, w, v: again.append(p) or original(self, p, w, v))
    windows, vectors = embed(checkpoint, [frogs], tmp_path / "out", engine="torch", parquet=True, progress=False)
    assert len(again) == 17 - 4 and not set(again) & set(recorded)  # only the recordings not done before

    expected_windows, expected_vectors = frogs_embedded
    stored = np.load(tmp_path / "out" / "embeddings.npy")
    np.testing.assert_array_equal(stored, expected_vectors)  # the same batches: the same numbers
    np.testing.assert_array_equal(np.asarray(vectors), stored)
    pd.testing.assert_frame_equal(windows, expected_windows)
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "out" / "windows.csv"), expected_windows)
    table = pd.read_parquet(tmp_path / "out" / "embeddings.parquet")
    assert list(table.columns[:4]) == ["file", "start_s", "end_s", "emb_000"] and table.columns[-1] == "emb_959"
    pd.testing.assert_frame_equal(table[["file", "start_s", "end_s"]], expected_windows)
    np.testing.assert_array_equal(table.iloc[:, 3:].to_numpy(), stored)
    settings = json.loads((tmp_path / "out" / "embed.json").read_text())
    assert settings["finished"] and settings["dim"] == 960 and settings["listed"] == 17
    with pytest.raises(Mix2Error, match="embed.json: this folder holds embeddings with other settings \\(hop_s, windows\\)"):
        embed(checkpoint, [frogs], tmp_path / "out", hop_s=0.5, engine="torch", progress=False)


def test_cli_embed_names_what_it_wrote_and_lists_unreadable_files(checkpoint, tmp_path, capsys):
    (tmp_path / "broken.wav").write_bytes(b"RIFF not audio")
    toad = shared_data("frogs") / "great_plains_toad.wav"
    assert main(["embed", str(checkpoint), str(toad), str(tmp_path / "broken.wav"), "--out", str(tmp_path / "e"), "--quiet"]) == 0
    out = capsys.readouterr().out
    windows = len(pd.read_csv(tmp_path / "e" / "windows.csv"))
    assert f"{windows} windows of 1 recordings, 960 numbers each, in {tmp_path / 'e'}/embeddings.npy, windows.csv" in out
    assert "skipped 1 unreadable recording(s)" in out
    assert pd.read_csv(tmp_path / "e" / "failures.csv")["file"].tolist() == [str(tmp_path / "broken.wav")]
    assert main(["embed", str(checkpoint), str(tmp_path / "broken.wav"), "--out", str(tmp_path / "f"), "--quiet"]) == 2
    assert "no recording could be embedded" in capsys.readouterr().err


@pytest.fixture(scope="module")
def sharded_embeddings(checkpoint, tmp_path_factory):
    """The frog recordings embedded in 3 shards, with Parquet; returns the folder holding ``shard1..3``."""
    folder, frogs = tmp_path_factory.mktemp("embed_shards"), shared_data("frogs")
    for index in (1, 2, 3):
        out = str(folder / f"shard{index}")
        assert main(["embed", str(checkpoint), str(frogs), "--out", out, "--shard", f"{index}/3", "--parquet", "--quiet"]) == 0
    return folder


def test_merged_embedding_shards_are_the_unsharded_job(frogs_embedded, sharded_embeddings, tmp_path, capsys):
    expected_windows, expected_vectors = frogs_embedded
    sizes = [len(pd.read_csv(sharded_embeddings / f"shard{i}" / "windows.csv")) for i in (1, 2, 3)]
    assert all(sizes) and sum(sizes) == len(expected_windows)  # 17 recordings hash into all three shards
    shards = [str(sharded_embeddings / f"shard{i}") for i in (2, 3, 1)]  # in any order
    assert main(["merge", *shards, "--out", str(tmp_path / "merged"), "--parquet"]) == 0
    assert f"{len(expected_windows)} windows of 17 recordings from 3 shards" in capsys.readouterr().out
    merged = tmp_path / "merged"
    pd.testing.assert_frame_equal(pd.read_csv(merged / "windows.csv"), expected_windows)  # rows by recording, as one job's
    stored = np.load(merged / "embeddings.npy")
    scale = np.abs(expected_vectors).max()  # other batch partners: float rounding only
    np.testing.assert_allclose(stored, expected_vectors, rtol=0, atol=1e-4 * scale)
    table = pd.read_parquet(merged / "embeddings.parquet")
    pd.testing.assert_frame_equal(table[["file", "start_s", "end_s"]], expected_windows)
    np.testing.assert_array_equal(table.iloc[:, 3:].to_numpy(), stored)
    settings = json.loads((merged / "embed.json").read_text())
    assert settings["finished"] and settings["dim"] == 960 and settings["listed"] == 17 and len(settings["merged"]) == 3
    assert pd.read_csv(merged / "failures.csv").empty


def test_merge_refuses_missing_unsharded_foreign_or_other_jobs_shards(checkpoint, sharded_embeddings, tmp_path):
    shard = [sharded_embeddings / f"shard{i}" for i in (1, 2, 3)]
    with pytest.raises(Mix2Error, match="shards 1 to 3 of one embedding, each once; missing 2"):
        merge_embeddings([shard[0], shard[2]], tmp_path / "out")
    prediction = tmp_path / "prediction"
    prediction.mkdir()
    (prediction / "predict.json").write_text("{}")
    with pytest.raises(Mix2Error, match=f"{prediction}: not an output folder of mix2 embed \\(it has no embed.json\\)"):
        merge_shards([shard[0], prediction, shard[2]], tmp_path / "out")
    toad = shared_data("frogs") / "great_plains_toad.wav"
    embed(checkpoint, [toad], tmp_path / "whole", progress=False)
    with pytest.raises(Mix2Error, match="holds an embedding that was not sharded \\(mix2 embed --shard I/N\\)"):
        merge_shards([tmp_path / "whole"], tmp_path / "out")
    foreign = tmp_path / "foreign"
    shutil.copytree(shard[1], foreign)
    record = json.loads((foreign / "embed.json").read_text())
    (foreign / "embed.json").write_text(json.dumps({**record, "hop_s": 0.5}))
    with pytest.raises(Mix2Error, match=r"is not a shard of the same embedding as .* \(hop_s differ\)"):
        merge_embeddings([shard[0], foreign, shard[2]], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before writing anything


def test_a_shard_that_no_recording_falls_in_finishes_and_merges(checkpoint, tmp_path, capsys):
    toad = shared_data("frogs") / "great_plains_toad.wav"
    its_shard = shard_of(toad, 2)
    for index in (3 - its_shard, its_shard):  # the empty shard first
        assert (
            main(["embed", str(checkpoint), str(toad), "--out", str(tmp_path / str(index)), "--shard", f"{index}/2", "--quiet"])
            == 0
        )
    assert "none of the recordings fell in this shard" in capsys.readouterr().out
    assert np.load(tmp_path / str(3 - its_shard) / "embeddings.npy").shape == (0, 960)
    windows, vectors = merge_embeddings([tmp_path / "1", tmp_path / "2"], tmp_path / "merged")
    whole_windows, whole_vectors = embed(checkpoint, [toad], progress=False)
    pd.testing.assert_frame_equal(windows, whole_windows)
    np.testing.assert_allclose(vectors, whole_vectors, rtol=0, atol=1e-4 * np.abs(whole_vectors).max())
