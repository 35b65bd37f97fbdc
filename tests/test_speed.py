"""The fast paths give the results of the plain ones: micro-batches, folded batch norm, bf16, the feature cache."""

import copy
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import shared_data
from mix2 import default_config, run, train
from mix2.cli import build_parser, config_from_args
from mix2.config import LossConfig, MixingConfig, SettingError, TrainConfig
from mix2.engines import installed, resolve_engine
from mix2.errors import Mix2Error
from mix2.features.logmel import LogMel
from mix2.losses import create_loss
from mix2.mixing import create_mixer, mix_rows
from mix2.models import create_model
from mix2.models.fusion import fold_batch_norm
from mix2.models.micro_batches import MicroBatches
from mix2.training import KEPT_INPUT_BYTES, CachedClips, Classifier, clip_loader
from test_end_to_end import tiny_chorus_config

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import speed  # benchmarks/speed.py

SHAPE = (1, 32, 64)  # small spectrograms: the maths is the same at any size


@pytest.fixture(scope="module")
def statistics_model() -> torch.nn.Module:
    """A MobileNetV3 with 6 classes whose batch-norm running statistics are far from their initial 0 and 1."""
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large", num_classes=6, bn_momentum=0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(3 * torch.rand(8, *SHAPE) + 1)
    return model.eval()


@pytest.fixture
def model(statistics_model) -> torch.nn.Module:
    return copy.deepcopy(statistics_model)


def _loss_and_gradients(model, method: str, micro: int | None, x, targets):
    """One step's loss and parameter gradients, with the mixer's draws seeded the same way every call."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(7)
    mixer = create_mixer(MixingConfig(method=method))
    out = mixer(MicroBatches(model, micro) if micro else model, x, targets)
    loss = create_loss(LossConfig(name="bce+add"))(out.logits, out.targets, out.embedding)
    loss.backward()
    return out, loss.detach(), [p.grad.clone() for p in model.parameters()]


@pytest.mark.parametrize("method", ["none", "mixup", "manifold_mixup", "multimix", "mix2"])
def test_micro_batches_give_the_whole_batch_loss_and_gradients(model, method):
    # With batch norm on its running statistics every stage acts on each clip alone, so the
    # maths says chunking changes nothing: MultiMix mixes all 6 clips, ADD counts all 15 pairs.
    x = torch.rand(6, *SHAPE)
    targets = torch.tensor(
        [[1, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1], [1, 1, 0, 0, 0, 0], [0, 0, 1, 0, 1, 0], [0] * 6, [0, 0, 0, 1, 0, 0]]
    )
    whole, whole_loss, whole_grads = _loss_and_gradients(model, method, None, x, targets.float())
    seen = []
    hook = model.stem.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    chunked, chunked_loss, chunked_grads = _loss_and_gradients(model, method, 2, x, targets.float())
    hook.remove()
    assert seen and max(seen) <= 2 and sum(seen) == 6  # the model ran on chunks of at most 2 clips
    torch.testing.assert_close(chunked.targets, whole.targets)  # the same mix of the whole batch
    torch.testing.assert_close(chunked_loss, whole_loss, rtol=1e-5, atol=1e-6)
    for mine, theirs in zip(chunked_grads, whole_grads):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-6)


def test_multimix_on_micro_batches_mixes_clips_from_every_chunk(model):
    torch.manual_seed(3)
    out = create_mixer(MixingConfig(method="multimix"))(MicroBatches(model, 2), torch.rand(6, *SHAPE), torch.eye(6))
    # One-hot targets make the mixed targets the mixing weights themselves: every mixed clip
    # draws on clips of all three chunks, with Dirichlet weights summing to 1.
    assert out.targets.shape == (6, 6)
    torch.testing.assert_close(out.targets.sum(dim=1), torch.ones(6))
    chunk_weights = out.targets.reshape(6, 3, 2).sum(dim=2)
    assert (chunk_weights > 0).all()


def test_micro_batches_in_training_mode_normalise_each_chunk_by_its_own_statistics(model):
    model.train()
    x = torch.rand(4, *SHAPE)
    with torch.no_grad():
        chunked = MicroBatches(model, 2)(x)
        by_hand = torch.cat([model(x[:2]), model(x[2:])])
        whole = model(x)
    torch.testing.assert_close(chunked, by_hand)
    assert not torch.allclose(chunked, whole, atol=1e-4)  # batch norm saw other statistics


def test_folding_batch_norm_keeps_the_logits_and_leaves_the_model_alone(model):
    x = torch.rand(3, *SHAPE)
    folded = fold_batch_norm(model)
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(norms) == 46 and not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    with torch.no_grad():
        reference = model(x)
        assert reference.abs().max() > 1e-3  # a model whose logits vary, so the comparison means something
        torch.testing.assert_close(folded(x), reference, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), reference)  # the original still has its batch norms
    assert len([m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]) == 46


def test_under_bf16_autocast_targets_are_mixed_in_fp32_with_the_weights_drawn():
    weights = torch.distributions.Dirichlet(torch.full((5,), 0.2)).sample((5,))
    targets = (torch.rand(5, 7) < 0.4).float()
    hidden = torch.rand(5, 3, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed_targets = mix_rows(weights, targets)
        mixed_hidden = mix_rows(weights, hidden.bfloat16())
    assert mixed_targets.dtype == torch.float32 and mixed_hidden.dtype == torch.bfloat16
    torch.testing.assert_close(mixed_targets, weights @ targets)  # exact to fp32, not bf16's 3 digits
    torch.testing.assert_close(mixed_hidden.float(), mix_rows(weights, hidden.bfloat16().float()).bfloat16().float())


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"precision": "fp8"}, "train.precision must be one of: fp32, bf16, fp16, got 'fp8'"),
        (
            {"micro_batch_size": 0},
            "train.micro_batch_size must be an integer from 1 to the batch size of one process (128), got 0",
        ),
        (
            {"micro_batch_size": 256},
            "train.micro_batch_size must be an integer from 1 to the batch size of one process (128), got 256",
        ),
        ({"batch_size": 0}, "train.batch_size must be a positive integer, got 0"),
        ({"precision": "fp16", "accelerator": "cpu"}, "train.precision fp16 needs a GPU; on a CPU use bf16"),
    ],
)
def test_impossible_speed_settings_are_refused_before_any_work(settings, message):
    with pytest.raises(Mix2Error) as caught:
        TrainConfig(**settings).check()
    assert str(caught.value) == message


@pytest.mark.slow
def test_bf16_micro_batched_mix2_run_never_recomputes_features_and_logs_its_speed(tmp_path, monkeypatch):
    monkeypatch.setenv("MIX2_CACHE_DIR", str(tmp_path / "cache"))  # an empty cache: the front-end must run, once
    frontend_calls, during_fit = [], {}
    forward = LogMel.forward
    monkeypatch.setattr(LogMel, "forward", lambda self, waveform: frontend_calls.append(len(waveform)) or forward(self, waveform))
    fit = run._fit

    def counting_fit(*args, **kwargs):
        before = len(frontend_calls)
        cache_reads.clear()
        fit(*args, **kwargs)
        during_fit["frontend_calls"] = len(frontend_calls) - before
        during_fit["cache_reads"] = list(cache_reads)

    monkeypatch.setattr(run, "_fit", counting_fit)
    cache_reads = []
    load = np.load
    monkeypatch.setattr(np, "load", lambda path, *args, **kwargs: cache_reads.append(Path(path)) or load(path, *args, **kwargs))
    config = tiny_chorus_config(tmp_path)
    config.train.epochs, config.train.precision, config.train.micro_batch_size = 3, "bf16", 4
    config.mixing.method, config.loss.name = "mix2", "bce+add"
    run_dir = train(config, run_dir=tmp_path / "run", progress=False)

    assert frontend_calls and during_fit["frontend_calls"] == 0  # three epochs read the cache only
    reads, splits = during_fit["cache_reads"], pd.read_csv(run_dir / "clips.csv")["split"]
    assert (splits == "val").sum() < len(reads) <= splits.isin(["train", "val"]).sum()
    assert len(set(reads)) == len(reads)  # each clip's file read once in three epochs; after that, from memory
    speed = pd.read_csv(run_dir / "logs" / "speed.csv")
    train_clips = (pd.read_csv(run_dir / "clips.csv")["split"] == "train").sum()
    assert list(speed["epoch"]) == [1, 2, 3]  # counted from 1, as a person reads them
    assert (speed["clips"] == train_clips // 8 * 8).all() and (speed["steps"] == train_clips // 8).all()
    assert speed["data_wait_fraction"].between(0, 1, inclusive="left").all() and (speed["clips_per_s"] > 0).all()
    log = pd.read_csv(run_dir / "logs" / "metrics.csv")
    assert list(log["epoch"]) == [1, 2, 3] and np.isfinite(log["train_loss"]).all()  # one row per epoch
    assert "precision: bf16" in (run_dir / "config.yaml").read_text()


def test_kept_clips_are_the_values_of_their_files_until_the_budget_is_spent(tmp_path):
    rng = np.random.default_rng(0)
    paths = [tmp_path / f"{i}.npy" for i in range(3)]
    for path in paths:
        np.save(path, rng.normal(-40, 10, (8, 6)).astype(np.float16))
    labels = np.eye(3)
    from_files = [CachedClips(paths, labels)[i] for i in range(3)]
    clip_bytes = 8 * 6 * 4  # one scaled float32 clip
    kept = CachedClips(paths, labels, kept_bytes=2 * clip_bytes + clip_bytes // 2)
    first_reads = [kept[i] for i in range(3)]
    evaluation = clip_loader(paths, labels, tiny_chorus_config(tmp_path).train, 3)
    next(iter(evaluation))
    assert evaluation.dataset.kept == {}  # evaluation's loaders keep nothing: they read each clip once
    for path in paths:
        path.unlink()
    for i in range(2):  # kept: read again from memory, the same values
        for read in (first_reads[i], kept[i]):
            assert torch.equal(read[0], from_files[i][0]) and torch.equal(read[1], from_files[i][1])
    with pytest.raises(FileNotFoundError):  # the budget held two clips, not three
        kept[2]
    assert sorted(kept.kept) == [0, 1] and kept.bytes_left == clip_bytes // 2


def test_a_batch_changed_in_place_leaves_the_kept_clips_as_read(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.linspace(-60, 0, 48, dtype=np.float16).reshape(8, 6))
    loader = clip_loader([path], np.ones((1, 2)), tiny_chorus_config(tmp_path).train, 1, kept_bytes=KEPT_INPUT_BYTES)
    first, _ = next(iter(loader))
    expected = first.clone()
    first.mul_(0)  # augmentation may act in place on a batch
    again, _ = next(iter(loader))
    assert torch.equal(again, expected) and list(loader.dataset.kept) == [0]


def test_loaders_pin_memory_only_for_a_gpu(monkeypatch):
    config = tiny_chorus_config(Path("unused"))
    paths, labels = [Path("a.npy")], np.zeros((1, 10))
    assert not clip_loader(paths, labels, config.train, 4).pin_memory
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert clip_loader(paths, labels, config.train, 4).pin_memory
    config.train.accelerator = "cpu"
    assert not clip_loader(paths, labels, config.train, 4).pin_memory


@pytest.mark.slow
def test_the_speed_benchmark_measures_every_path_and_epoch_sizes(tmp_path, capsys):
    # Toy sizes: the figures mean nothing here, the code paths and the bookkeeping do.
    setups = [speed.Setup("baseline", channels_last=False, batch_size=2), speed.Setup("ours", channels_last=True, batch_size=2)]
    training = speed.compare(speed.time_training, setups, rounds=1, steps=1, frames=32)
    assert [row["name"] for row in training] == ["baseline", "ours"] and training[0]["speedup"] == 1.0
    assert all(row["clips_per_s"] > 0 and 0.1 < row["peak_rss_gb"] < 20 for row in training)
    micro = speed.Setup("micro", channels_last=True, precision="bf16", batch_size=4, micro_batch_size=2, fold=True)
    assert speed.time_training(micro, steps=1, frames=32)[0] > 0 and speed.time_inference(micro, steps=1, frames=32)[0] > 0
    for engine in [name for name in ("onnxruntime", "openvino") if installed(name)]:  # exported at the benchmark's input
        assert speed.time_inference(speed.Setup(engine, True, batch_size=2, fold=True, engine=engine), 1, frames=32)[0] > 0
    assert [setup.engine for setup in speed.inference_setups(2) if setup.name.startswith("mix2:")] == [
        resolve_engine("auto", torch.device("cpu"))
    ]
    print(speed._table("Training", training))
    assert "| ours | 2 |" in capsys.readouterr().out

    recordings = sorted(shared_data("frogs").glob("Physalaemus_*.wav"))
    frontend, cache = speed.frontend_and_cache(recordings, tmp_path / "cache", batch=4)
    assert frontend["recordings"] == 3 and frontend["clips"] == cache["clips"] >= 3 and cache["clips_per_s"] > 0

    epochs = speed.epochs([4, 8, 12], batch=2, frames=32, folder=tmp_path)
    assert [row["clips"] for row in epochs["scaling"]] == [4, 8, 12] and epochs["frontend_calls_during_training"] == 0
    assert epochs["scaling"][0]["seconds_per_clip_vs_smallest"] == 1.0 and 0 <= epochs["data_wait_fraction"] < 1


def test_compile_compiles_the_network_in_place_so_checkpoints_keep_their_keys(tmp_path):
    config = config_from_args(build_parser().parse_args(["train", "--compile"]))
    assert config.train.compile and not default_config().train.compile  # off unless asked for
    compiled, plain = (Classifier(c.to_dict(), ["a", "b"]) for c in (config, default_config()))
    assert compiled.model._compiled_call_impl is not None and plain.model._compiled_call_impl is None
    assert list(compiled.state_dict()) == list(plain.state_dict())  # no "_orig_mod." prefix
    config.train.compile = "yes"
    with pytest.raises(SettingError, match="train.compile must be true or false, got .yes."):
        config.train.check()
