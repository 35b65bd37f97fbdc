"""Training over several processes: the global batch, DDP against one process, launching, the shared cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import ddp_steps
import mix2.files
from mix2 import resume, train
from mix2.config import MixingConfig, MultiMixSettings, RunConfig, TrainConfig
from mix2.distributed import ONE_PROCESS, RUN_DIR_VARIABLE, BatchGroup, is_first_process
from mix2.errors import Mix2Error
from mix2.features.cache import FeatureCache
from mix2.mixing import create_mixer
from mix2.training import CachedClips, EpochShuffle, Strided
from test_end_to_end import tiny_chorus_config

TESTS = Path(__file__).parent


@pytest.mark.parametrize("processes", [2, 4])
def test_the_shares_of_each_global_batch_are_the_single_process_batch(processes):
    single = EpochShuffle(70, seed=3)
    shares = [EpochShuffle(70, 3, batch_size=16, rank=r, processes=processes) for r in range(processes)]
    for epoch in (0, 5):
        for sampler in [single, *shares]:
            sampler.set_epoch(epoch)
        order, parts = list(single), [list(share) for share in shares]
        per_batch = 16 // processes
        assert all(len(part) == len(share) == 4 * per_batch for part, share in zip(parts, shares))  # 70 // 16 whole batches
        for k in range(4):
            joined = [i for part in parts for i in part[k * per_batch : (k + 1) * per_batch]]
            assert joined == order[16 * k : 16 * (k + 1)]


def test_validation_shares_cover_every_clip_once():
    shares = [list(Strided(11, rank, 3)) for rank in range(3)]
    assert sorted(i for share in shares for i in share) == list(range(11))
    assert [len(Strided(11, rank, 3)) for rank in range(3)] == [4, 4, 3]


def test_one_process_is_the_identity_group():
    x = torch.rand(6, 3)
    assert ONE_PROCESS.gather(x) is x and ONE_PROCESS.own_rows(6) == slice(0, 6) and ONE_PROCESS.all_true(False) is False
    assert BatchGroup.current() == ONE_PROCESS  # no process group in the tests' process
    with pytest.raises(ValueError, match="do not split evenly"):
        BatchGroup(rank=0, size=4).own_rows(6)


@pytest.mark.parametrize("method", ["mixup", "multimix", "mix2"])
def test_reseeded_mixers_draw_alike_whatever_the_global_generator(method):
    """Every process draws the same mix: the mixer's own generator, untouched by per-process draws."""
    outputs = []
    for global_seed in (1, 2):
        mixer = create_mixer(MixingConfig(method=method))
        mixer.reseed(7)
        torch.manual_seed(global_seed)  # each process seeds its own augmentation differently
        before = torch.get_rng_state()
        with mixer.drawing():
            draws = [mixer.draw(8).weights for _ in range(3)] if method != "mix2" else None
        outputs.append(draws or [mixer.choose() for _ in range(6)])
        assert torch.equal(torch.get_rng_state(), before)  # the global generator is left as it was
    first, second = outputs
    if method == "mix2":
        assert first == second and len(set(first)) > 1
    else:
        assert all(torch.equal(a, b) for a, b in zip(first, second)) and not torch.equal(first[0], first[1])


def test_settings_a_shared_batch_cannot_run_are_refused_in_one_line():
    with pytest.raises(Mix2Error, match="multiple of 3"):
        TrainConfig(batch_size=128, devices=3).check()
    with pytest.raises(Mix2Error, match=r"batch size of one process \(16\)"):
        TrainConfig(batch_size=128, devices=4, num_nodes=2, micro_batch_size=32).check()
    with pytest.raises(Mix2Error, match="train.strategy must be one of: auto, ddp, got 'fsdp'"):
        TrainConfig(strategy="fsdp").check()
    with pytest.raises(Mix2Error, match="num_nodes must be a positive integer"):
        TrainConfig(num_nodes=0).check()
    with pytest.raises(Mix2Error, match="SyncBatchNorm does not run on a CPU"):
        TrainConfig(sync_batchnorm=True, accelerator="cpu").check()
    TrainConfig(sync_batchnorm=True, accelerator="cpu").check(here=False)  # prepared here, trained on GPUs elsewhere
    config = RunConfig(
        train=TrainConfig(batch_size=16, devices=2), mixing=MixingConfig(method="mix2", multimix=MultiMixSettings(examples=5))
    )
    with pytest.raises(Mix2Error, match="mixing.multimix.examples"):
        config.check()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    """The cases of ddp_steps.py, trained by 2 processes (gloo) and by one; ``(folder, {case: (ddp, one)})``."""
    folder = tmp_path_factory.mktemp("ddp")
    done = subprocess.run(
        [sys.executable, str(TESTS / "ddp_steps.py"), str(folder), "2"], check=False, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = {}
    for case in ddp_steps.CASES:
        module, logged = ddp_steps.fit(folder / "one", *case, devices=1)
        results[case] = (torch.load(folder / f"{'-'.join(case)}.pt"), (module, logged))
    return folder, results


@pytest.mark.parametrize("case", ddp_steps.CASES, ids=["-".join(c) for c in ddp_steps.CASES])
def test_ddp_over_two_processes_trains_as_one_process_with_the_same_global_batch(ddp_results, case):
    """Three AdamW steps with MultiMix / Mixup (random or balanced partners) / Mix2 and ADD over the global batch: the same weights.

    One process runs the global batch of 16 in micro-batches of 8, so that batch norm sees the
    same 8 clips as on each device.
    """
    ddp, (module, logged) = ddp_results[1][case]
    start = ddp_steps.classifier(*case, devices=1).state_dict()
    weights = [key for key, value in start.items() if "running" not in key and "num_batches" not in key]
    one_step = torch.cat([(module.state_dict()[k] - start[k]).flatten() for k in weights])
    ddp_step = torch.cat([(ddp["state_dict"][k] - start[k]).flatten() for k in weights])
    assert one_step.norm() > 1e-3  # the weights did move
    assert (ddp_step - one_step).norm() / one_step.norm() < 1e-8
    assert ddp["logged"]["train_loss"] == pytest.approx(logged["train_loss"], rel=1e-10)


def test_ddp_validation_covers_the_whole_split_on_one_model(ddp_results):
    """Each process validates its share (6 and 5 clips); the gathered loss is the whole split's, on the checkpoint's model."""
    ddp, _ = ddp_results[1][ddp_steps.CASES[0]]
    module = ddp_steps.classifier(*ddp_steps.CASES[0], devices=1).double()
    module.load_state_dict(ddp["state_dict"])
    _, val = ddp_steps.tiny_features(ddp_results[0] / "features")
    clips = CachedClips(*val)
    x, labels = (torch.stack(column) for column in zip(*(clips[i] for i in range(len(clips)))))
    with torch.no_grad():
        logits = module.eval()(x.double()).float()
    expected = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    assert ddp["logged"]["val_loss"] == pytest.approx(float(expected), abs=1e-6)


def test_mix2_train_on_two_cpu_processes_writes_one_finished_run(tmp_path):
    """``mix2 train --devices 2``: Lightning starts the second process; one run folder, evaluated once."""
    out, config_path = tmp_path / "runs", tmp_path / "config.yaml"
    tiny_chorus_config(tmp_path).to_yaml(config_path)
    command = [sys.executable, "-m", "mix2.cli", "train", "--quiet", "--config", str(config_path), "--out", str(out)]
    command += ["--epochs", "1", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp", "--mixing", "mix2"]
    done = subprocess.run(command + ["--loss", "bce+add"], check=False, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    (run_dir,) = out.iterdir()
    assert json.loads((run_dir / "metrics.json").read_text())["clips"] > 0
    assert done.stdout.count("run folder:") == 1  # the second process leaves the summary to the first
    speed = pd.read_csv(run_dir / "logs" / "speed.csv")
    train_clips = (pd.read_csv(run_dir / "clips.csv")["split"] == "train").sum()
    assert speed["clips"].tolist() == [train_clips // 8 * 8]  # both processes' shares of each global batch of 8
    assert "devices: 2" in (run_dir / "config.yaml").read_text()


def test_a_prepared_run_trains_with_resume_from_a_read_only_cache(tmp_path, monkeypatch):
    """--prepare-only fills the cache; resume (every process of a cluster job) then only reads it."""
    config = tiny_chorus_config(tmp_path)
    config.train.epochs = 1
    run_dir = train(config, run_dir=tmp_path / "run", progress=False, prepare_only=True)
    assert (run_dir / "clips.csv").is_file() and not (run_dir / "checkpoints").exists()

    def refuse(path, features):
        raise AssertionError(f"the cache was written: {path}")

    monkeypatch.setattr(FeatureCache, "write", staticmethod(refuse))
    resume(run_dir, progress=False)
    assert (run_dir / "metrics.json").is_file()


def test_an_unwritable_cache_that_lacks_clips_is_one_line(tmp_path, monkeypatch):
    def unwritable(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(mix2.files.tempfile, "mkstemp", unwritable)  # where cache entries get their partial files
    config = tiny_chorus_config(tmp_path)
    monkeypatch.setenv("MIX2_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(Mix2Error, match="cannot be written \\(Permission denied\\)") as error:
        train(config, run_dir=tmp_path / "run", progress=False, prepare_only=True)
    assert "\n" not in str(error.value) and "--prepare-only" in str(error.value)


def test_a_process_started_besides_the_first_needs_a_prepared_run(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")  # as torchrun starts rank 3
    monkeypatch.delenv(RUN_DIR_VARIABLE, raising=False)
    assert not is_first_process()
    with pytest.raises(Mix2Error, match="found no prepared run folder") as error:
        train(tiny_chorus_config(tmp_path), run_dir=tmp_path / "run", progress=False)
    assert "mix2 train --resume DIR" in str(error.value) and not (tmp_path / "run").exists()


def test_an_experiment_refuses_several_devices_per_run(tmp_path):
    from mix2.experiment import Experiment, run_experiment

    config = tiny_chorus_config(tmp_path)
    config.train.devices = 2
    with pytest.raises(Mix2Error, match="array job"):
        run_experiment(tmp_path / "experiment", Experiment(config, ["timeshift"], [0]))
