"""mix2 embed on real frog recordings: predict's windows, the classifier's own input, a resumable folder."""

import json

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import FOUR_CLASSES, shared_data
from mix2.cli import main
from mix2.errors import Mix2Error
from mix2.inference import load_trained_model
from mix2.predict import embed, predict
from mix2.predict.embed import EmbedState


@pytest.fixture(scope="module")
def frogs_embedded(checkpoint):
    return embed(checkpoint, [shared_data("frogs")], progress=False)


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
    _, alone_vectors = embed(checkpoint, [recording], batch_size=3, progress=False)
    rows = (windows["file"] == str(recording)).to_numpy()
    scale = np.abs(vectors).max()  # the untrained network's embedding runs to some hundreds
    np.testing.assert_allclose(alone_vectors, vectors[rows], rtol=0, atol=1e-4 * scale)


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
        embed(checkpoint, [frogs], tmp_path / "out", parquet=True, progress=False)
    assert not (tmp_path / "out" / "embeddings.npy").exists()
    again = []
    monkeypatch.setattr(EmbedState, "record", lambda self, p, w, v: again.append(p) or original(self, p, w, v))
    windows, vectors = embed(checkpoint, [frogs], tmp_path / "out", parquet=True, progress=False)
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
        embed(checkpoint, [frogs], tmp_path / "out", hop_s=0.5, progress=False)


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
