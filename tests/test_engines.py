"""Inference engines: every installed engine scores real recordings as PyTorch does, exports once, falls back in one line."""

import json
import logging
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shared_data
from mix2 import engines
from mix2.data.audio import duration_s, read_windows
from mix2.engines import exported_onnx, load_engine, network_digest, resolve_engine
from mix2.errors import Mix2Error
from mix2.features.frontend import FrontEnd
from mix2.inference import load_trained_model
from mix2.predict import find_recordings, merge_predictions, predict, recording_windows

EXPORTED = [name for name in ("onnxruntime", "openvino") if engines.installed(name)]
AGREEMENT = 1e-4
"""The largest difference between an engine's logit and PyTorch's accepted, as a share of the largest logit of its clip."""


@pytest.fixture(scope="module")
def frog_features(checkpoint):
    """The network's input for every window of every frog recording, as predict makes it."""
    trained = load_trained_model(checkpoint)
    windows = [
        clip
        for path in find_recordings([shared_data("frogs")])
        for clip in read_windows(path, [start for start, _ in recording_windows(duration_s(path), 3.0, 1.0)], 3.0, 16_000)
    ]
    return FrontEnd(trained.config.features)(torch.from_numpy(np.stack(windows)))


@pytest.mark.parametrize("name", ["onnxruntime", "openvino"])
def test_an_exported_engine_gives_pytorchs_logits_on_real_recordings(checkpoint, frog_features, name):
    if name not in EXPORTED:
        pytest.skip(f"{name} is not installed (pip install {name})")
    trained = load_trained_model(checkpoint)
    reference = load_engine(trained, checkpoint, "torch")(frog_features)
    logits = load_engine(trained, checkpoint, name)(frog_features)
    # float32 sums in another order: the error scales with the logits, which reach about 350 in
    # this untrained network (scores then differ by up to 1.5e-4; a trained one's by under 1e-6)
    scale = reference.abs().amax(dim=1, keepdim=True).clamp(min=1.0)
    error = ((logits - reference).abs() / scale).max().item()
    assert 0 < error < AGREEMENT  # another engine (so not exactly equal), the same logits
    assert len(frog_features) == 187 and reference.std(dim=0).min() > 0.1  # every window, and logits that vary


def test_the_export_is_made_once_per_network_and_a_new_network_replaces_it(checkpoint, tmp_path, monkeypatch):
    local = tmp_path / checkpoint.name
    local.write_bytes(checkpoint.read_bytes())
    trained = load_trained_model(local)
    first = exported_onnx(trained, local)
    assert first.parent == tmp_path and first.name == f"model.{network_digest(trained)}.onnx"

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    assert exported_onnx(load_trained_model(local), local) == first  # cached
    monkeypatch.undo()
    with torch.no_grad():
        next(trained.network.parameters()).add_(0.01)  # a retrained network
    second = exported_onnx(trained, local)
    assert second != first and second.is_file() and not first.exists()  # the earlier export is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([second.name, local.name])  # no partial file left


def test_an_unwritable_checkpoint_folder_exports_into_the_cache(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("MIX2_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(os, "access", lambda path, mode: False)
    path = exported_onnx(load_trained_model(checkpoint), checkpoint)
    assert path.parent == tmp_path / "cache" / "engines" and path.is_file()


def test_auto_takes_the_first_installed_and_a_missing_engine_falls_back_in_one_line(monkeypatch, caplog):
    cpu = torch.device("cpu")
    assert resolve_engine("auto", cpu) == next(n for n in ("onnxruntime", "openvino", "torch") if engines.installed(n))
    monkeypatch.setitem(engines.PACKAGES, "openvino", "openvino_not_here")
    with caplog.at_level(logging.WARNING, logger="mix2"):
        assert resolve_engine("openvino", cpu) == "torch"
    assert [r.getMessage() for r in caplog.records] == [
        "mix2: the openvino engine is not installed (pip install openvino_not_here); scoring with torch instead"
    ]
    with pytest.raises(Mix2Error, match="unknown inference engine 'tensorrt'; choose one of: auto, onnxruntime, openvino, torch"):
        resolve_engine("tensorrt", cpu)


def test_engines_score_batches_of_any_size(checkpoint, frog_features):
    trained = load_trained_model(checkpoint)
    features = frog_features[::40]
    reference = load_engine(trained, checkpoint, "torch")(features)
    for name in EXPORTED:
        engine = load_engine(trained, checkpoint, name)
        assert engine.name == name
        for rows in (slice(0, 1), slice(0, 5)):
            logits = engine(features[rows])
            assert logits.dtype == torch.float32 and logits.shape == (rows.stop, 4)
            np.testing.assert_allclose(logits.numpy(), reference[rows].numpy(), atol=AGREEMENT * reference.abs().max().item())


@pytest.mark.skipif(not EXPORTED, reason="no exported engine installed (pip install openvino or onnxruntime)")
def test_a_prediction_resumes_only_with_its_engine_and_shards_of_two_engines_do_not_merge(checkpoint, tmp_path):
    recording = shared_data("frogs") / "great_plains_toad.wav"
    predict(checkpoint, [recording], tmp_path / "out", engine=EXPORTED[0], progress=False)
    assert json.loads((tmp_path / "out" / "predict.json").read_text())["engine"] == EXPORTED[0]
    with pytest.raises(Mix2Error, match=rf"other settings \(engine\); use a new folder; to go on, pass --engine {EXPORTED[0]}"):
        predict(checkpoint, [recording], tmp_path / "out", engine="torch", progress=False)
    for index, engine in ((1, "torch"), (2, EXPORTED[0])):
        predict(checkpoint, [recording], tmp_path / f"shard{index}", engine=engine, shard=(index, 2), progress=False)
    with pytest.raises(Mix2Error, match=r"is not a shard of the same prediction .* \(engine differ"):
        merge_predictions([tmp_path / "shard1", tmp_path / "shard2"], tmp_path / "merged")


def test_a_folder_from_before_engines_resumes_with_torch(checkpoint, tmp_path):
    recording = shared_data("frogs") / "great_plains_toad.wav"
    first = predict(checkpoint, [recording], tmp_path / "out", engine="torch", progress=False)
    settings_path = tmp_path / "out" / "predict.json"
    settings = json.loads(settings_path.read_text())
    del settings["engine"]  # as written before engines existed
    settings_path.write_text(json.dumps(settings))
    again = predict(checkpoint, [recording], tmp_path / "out", engine="torch", progress=False)
    assert again.equals(first)


def test_the_agreement_benchmark_measures_every_path_against_the_exact_one(checkpoint, capsys):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import predict_agreement  # benchmarks/predict_agreement.py

    recording = shared_data("frogs") / "great_plains_toad.wav"
    assert predict_agreement.main([str(checkpoint), "--data", str(recording)]) == 0
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [row[1] for row in rows] == [f"{name}, exact windows" for name in EXPORTED] + [
        "default: auto engine, windows cut from blocks"
    ]
    assert all(row[-1].endswith(f"of {43 * 4} |") for row in rows)  # 43 windows x 4 classes


def test_only_the_same_checkpoints_networks_of_the_same_kind_for_other_weights_are_removed(tmp_path):
    old, new = "0" * 16, "f" * 16
    kept = [f"a.b.{new}.int8.xml", f"a.b.{old}.int8.json", f"a.b.{old}.onnx", f"a.c.{old}.int8.xml", f"a.b.{old}.int8.xml.x"]
    for name in [*kept, f"a.b.{old}.int8.xml"]:
        (tmp_path / name).touch()
    engines.remove_other_weights(tmp_path / f"a.b.{new}.int8.xml", tmp_path / "a.b.ckpt")  # a stem with a dot in it
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(kept)
