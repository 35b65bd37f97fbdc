"""int8 for CPU inference: quantised on the run's validation clips, checked on its test clips, run only where offered."""

import json
import logging

import numpy as np
import pytest
import torch

from conftest import shared_data
from mix2 import engines, train
from mix2.cli import _print_precision_check, main
from mix2.engines import int8_files, load_engine, resolve_engine
from mix2.errors import Mix2Error
from mix2.inference import load_trained_model
from mix2.predict import predict
from mix2.quantize import LIMIT_POINTS, precision_check, quantize
from mix2.run_folder import read_run_clips
from test_end_to_end import tiny_chorus_config

pytestmark = pytest.mark.skipif(not engines.installed("openvino"), reason="OpenVINO is not installed (pip install openvino nncf)")


@pytest.fixture(scope="module")
def quantized_run(tmp_path_factory):
    """A short chorus run, quantised: its folder and the check ``quantize`` returned."""
    run_dir = train(tiny_chorus_config(tmp_path_factory.mktemp("int8")), progress=False)
    return run_dir, quantize(run_dir, progress=False)


def set_offered(record_file, offered: bool, verdict: str = "int8 moved mAP by -0.8 points, more than 0.5") -> None:
    check = json.loads(record_file.read_text())
    record_file.write_text(json.dumps({**check, "offered": offered, "verdict": verdict}))


def test_quantize_writes_the_int8_network_and_its_check_beside_the_checkpoint(quantized_run):
    run_dir, check = quantized_run
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    network, record = int8_files(load_trained_model(checkpoint), checkpoint)
    assert network.parent == checkpoint.parent and network.name.endswith(".int8.xml") and network.with_suffix(".bin").is_file()
    assert json.loads(record.read_text()) == check and check["network"] == str(network)
    table = read_run_clips(run_dir)
    assert check["calibration_clips"] == len(table.split("val")) and check["test_clips"] == len(table.split("test"))
    assert set(check["metrics"]) == {"fp32", "bf16", "int8"} == set(check["clips_per_s"])
    for precision in ("bf16", "int8"):  # each change is the precision's metric minus fp32's, in points
        for name, change in check["differences"][precision].items():
            assert change == pytest.approx(check["metrics"][precision][name] - check["metrics"]["fp32"][name], abs=0.011)
    assert check["offered"] == all(abs(change) <= LIMIT_POINTS for change in check["differences"]["int8"].values())


def test_predict_runs_int8_only_where_its_check_offered_it(quantized_run, tmp_path):
    run_dir, _ = quantized_run
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    network, record = int8_files(load_trained_model(checkpoint), checkpoint)
    soundscape = shared_data("frogs") / "rfcx_f97ababc1.flac"
    set_offered(record, True, "int8 stayed within 0.5 points of fp32 on every metric")
    int8 = predict(checkpoint, [soundscape], tmp_path / "int8", precision="int8", progress=False)
    fp32 = predict(checkpoint, [soundscape], precision="fp32", progress=False)
    settings = json.loads((tmp_path / "int8" / "predict.json").read_text())
    assert (settings["precision"], settings["engine"]) == ("int8", "openvino")
    difference = np.abs(int8.iloc[:, 3:].to_numpy() - fp32.iloc[:, 3:].to_numpy())
    assert 0 < difference.max() < 0.2  # another network (so not equal), scoring the same windows alike
    set_offered(record, False)
    with pytest.raises(Mix2Error, match=r"int8 is not offered for .*best.ckpt: int8 moved mAP by -0.8 points, more than 0.5"):
        predict(checkpoint, [soundscape], precision="int8", progress=False)
    network.rename(network.with_name("elsewhere.xml"))
    try:
        with pytest.raises(Mix2Error, match=f"has no int8 network; make and check one with: mix2 quantize {run_dir}$"):
            predict(checkpoint, [soundscape], precision="int8", progress=False)
    finally:
        network.with_name("elsewhere.xml").rename(network)


def test_a_retrained_network_is_never_run_with_an_earlier_quantisation(quantized_run):
    run_dir, _ = quantized_run
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    trained = load_trained_model(checkpoint)
    with torch.no_grad():
        next(trained.network.parameters()).add_(0.01)
    with pytest.raises(Mix2Error, match="has no int8 network"):
        load_engine(trained, checkpoint, "openvino", precision="int8")


def test_int8_is_offered_within_the_limit_only():
    fp32 = {"macro F1 @threshold": 30.0, "mAP": 40.0}
    assert precision_check({"fp32": fp32, "bf16": fp32, "int8": {"macro F1 @threshold": 29.5, "mAP": 40.5}})["offered"]
    refused = precision_check({"fp32": fp32, "bf16": fp32, "int8": {"macro F1 @threshold": 29.49, "mAP": 40.0}})
    assert not refused["offered"] and refused["differences"]["int8"] == {"macro F1 @threshold": -0.51, "mAP": 0.0}
    assert refused["verdict"] == "int8 moved macro F1 @threshold by -0.5 points, more than 0.5"


def test_int8_runs_on_openvino_on_the_cpu_only_and_bf16_on_openvino_when_named(monkeypatch, caplog):
    cpu = torch.device("cpu")
    assert resolve_engine("auto", cpu, "int8") == resolve_engine("openvino", cpu, "int8") == "openvino"
    assert resolve_engine("auto", cpu, "bf16") == "torch"  # batch norm apart: the tighter bf16
    assert resolve_engine("openvino", cpu, "bf16") == "openvino"  # its bf16 hint: about twice fp32's speed
    for name, device in (("onnxruntime", cpu), ("torch", cpu), ("auto", torch.device("cuda"))):
        with pytest.raises(Mix2Error, match=f"int8 runs on the openvino engine on the CPU only .*got engine {name}"):
            resolve_engine(name, device, "int8")
    with caplog.at_level(logging.WARNING, logger="mix2"):
        assert resolve_engine("onnxruntime", cpu, "bf16") == "torch"
    assert [r.getMessage() for r in caplog.records] == [
        "mix2: the onnxruntime engine cannot run bf16 on the cpu; scoring with torch instead"
    ]
    monkeypatch.setitem(engines.PACKAGES, "openvino", "openvino_not_here")
    with pytest.raises(Mix2Error, match="int8 runs on the openvino engine on the CPU only"):
        resolve_engine("auto", cpu, "int8")


def test_cli_quantize_prints_the_check_and_refuses_a_folder_that_is_no_run(quantized_run, tmp_path, capsys):
    run_dir, _ = quantized_run
    assert main(["quantize", str(run_dir), "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("int8 network calibrated on ") and lines[0].endswith(".int8.xml")
    assert [line.split(":")[0] for line in lines[2:5]] == ["  fp32", "  bf16", "  int8"]
    assert "macro F1 tuned" in lines[3] and lines[3].endswith("clips/s") and "mAP" in lines[4] and "(" in lines[4]
    assert "offered" in lines[5]
    assert main(["quantize", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"mix2: error: {tmp_path}: not a mix2 run folder (it has no config.yaml)"


def test_an_offered_check_names_the_command_that_runs_it(capsys):
    check = precision_check({"fp32": {"mAP": 40.0}, "bf16": {"mAP": 40.0}, "int8": {"mAP": 39.9}})
    check.update(
        clips_per_s={"fp32": 200.0, "bf16": 400.0, "int8": 410.0}, network="n.int8.xml", calibration_clips=8, test_clips=9
    )
    _print_precision_check(check, "runs/a", "last")
    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "  fp32: mAP 40.0; 200 clips/s",
        "  bf16: mAP 40.0 (+0.00); 400 clips/s",
        "  int8: mAP 39.9 (-0.10); 410 clips/s",
    ]
    assert lines[5] == (
        "int8 stayed within 0.5 points of fp32 on every metric: offered, with mix2 predict runs/a/checkpoints/last.ckpt PATHS "
        "--precision int8"
    )
