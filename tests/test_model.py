import pytest
import torch
from torch._dynamo.utils import counters

from mix2.models import create_model
from mix2.models.mobilenetv3 import STAGES, make_divisible, pool_time_frequency


def count(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_torchvision():
    assert count(create_model("mobilenetv3_large", num_classes=1000, in_chans=3, head="mlp")) == 5_483_032


def test_paper_model_shapes():
    model = create_model("mobilenetv3_large", num_classes=42).eval()
    assert count(model) == 5_483_032 - 2 * 16 * 3 * 3 - (960 * 1280 + 1280) - (1280 * 1000 + 1000) + (960 * 42 + 42)
    x = torch.rand(3, 1, 128, 376)
    logits, embedding = model.forward_with_embedding(x)
    assert logits.shape == (3, 42) and embedding.shape == (3, 960)
    assert model(x, stop="features").shape == (3, 960, 4, 12)


def test_half_width_has_every_layer_s_channels_halved_and_a_480_d_embedding():
    def widths(model):
        return [(m.in_channels, m.out_channels, m.groups) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]

    paper, half = create_model("mobilenetv3_large", num_classes=7), create_model("mobilenetv3_large_050", num_classes=7)
    assert len(widths(half)) == len(widths(paper)) == 62
    for (cin, cout, groups), (half_cin, half_cout, half_groups) in zip(widths(paper), widths(half), strict=True):
        input_channel = 1 if cin == 1 else make_divisible(cin / 2)  # the spectrogram stays one channel
        assert (half_cin, half_cout) == (input_channel, make_divisible(cout / 2))
        assert half_groups == (half_cin if groups > 1 else 1)  # depthwise stays depthwise
    assert widths(half)[0] == (1, 8, 1) and widths(half)[-1] == (80, 480, 1)
    x = torch.rand(2, 1, 64, 94)
    logits, embedding = half.eval().forward_with_embedding(x)
    assert logits.shape == (2, 7) and embedding.shape == (2, 480) == (2, half.embedding_dim)
    assert half.classifier.in_features == 480 and paper.embedding_dim == 960
    with pytest.raises(ValueError, match="width must be above 0"):
        create_model("mobilenetv3_large", num_classes=2, width=0)


def test_every_stage_can_stop_and_resume():
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large", num_classes=5).eval()
    x = torch.rand(2, 1, 32, 48)
    with torch.no_grad():
        full = model(x)
        hidden, previous = x, "input"
        for stage in STAGES[1:-1]:
            hidden, previous = model(hidden, start=previous, stop=stage), stage
            torch.testing.assert_close(model(hidden, start=stage), full)
    with pytest.raises(ValueError, match="unknown stage"):
        model(x, stop="block99")


def test_pooling_is_frequency_mean_then_time_max_plus_mean():
    features = torch.tensor([[[[1.0, 5.0], [3.0, 1.0]]]])  # (1, 1, freq 2, time 2)
    assert pool_time_frequency(features).item() == pytest.approx(3.0 + 2.5)


def test_channels_last_gives_the_same_output():
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large", num_classes=4).eval()
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = model(x)
        model = model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.contiguous(memory_format=torch.channels_last)), expected, atol=1e-5, rtol=1e-4)


def test_batch_norm_momentum_is_configurable():
    def momenta(model):
        return {b.momentum for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)}

    assert momenta(create_model("mobilenetv3_large", num_classes=2)) == {0.01}
    assert momenta(create_model("mobilenetv3_large", num_classes=2, bn_momentum=0.1)) == {0.1}


def test_every_registered_model_keeps_the_staged_interface_mixers_rely_on():
    from mix2.models import StagedModel
    from mix2.registry import MODELS

    for name in MODELS.names():
        model = create_model(name, num_classes=3, n_mels=64, bn_momentum=0.1)
        assert isinstance(model, StagedModel), name
        assert model.stages[0] == "input" and model.stages[-2:] == ("embedding", "logits"), name
        logits, embedding = model.forward_with_embedding(torch.rand(2, 1, 64, 64))
        assert logits.shape == (2, 3) and embedding.ndim == 2, name
        torch.testing.assert_close(model.classifier(embedding), logits)  # the last layer, which --init re-makes
    assert not isinstance(torch.nn.Linear(2, 2), StagedModel)


def test_band_norm_gives_each_mel_band_its_own_level_and_spread():
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large_bandnorm", num_classes=2, n_mels=8).train()
    scale = torch.arange(1.0, 9.0).reshape(1, 1, 8, 1)  # band b has spread b + 1 and level 10 (b + 1)
    x = scale * (torch.randn(16, 1, 8, 50) + 10)
    normalised = model.band_norm(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(normalised.mean(dim=(0, 1, 3)), torch.zeros(8), atol=1e-5, rtol=0)
    torch.testing.assert_close(normalised.std(dim=(0, 1, 3), unbiased=False), torch.ones(8), atol=1e-3, rtol=0)
    stem_input = {}
    model.stem.register_forward_pre_hook(lambda module, args: stem_input.setdefault("x", args[0]))
    model(x)
    torch.testing.assert_close(stem_input["x"], normalised)  # the stem sees the normalised bands
    assert create_model("mobilenetv3_large", num_classes=2).band_norm is None


def test_the_frequency_channel_gives_the_stem_each_mel_band_s_position_beside_the_spectrogram():
    model = create_model("mobilenetv3_large_freqcoord", num_classes=2, n_mels=5).eval()
    x = torch.rand(3, 1, 5, 20)
    stem_input = {}
    model.stem.register_forward_pre_hook(lambda module, args: stem_input.setdefault("x", args[0]))
    model(x)
    assert stem_input["x"].shape == (3, 2, 5, 20) and model.stem[0].in_channels == 2
    torch.testing.assert_close(stem_input["x"][:, 0], x[:, 0])  # the spectrogram as it came
    position = torch.tensor([0.0, 0.25, 0.5, 0.75, 1.0]).view(5, 1).expand(5, 20)
    for clip in stem_input["x"][:, 1]:
        torch.testing.assert_close(clip, position, rtol=0, atol=1e-7)  # lowest band 0, highest 1, every frame
    assert not any("frequency" in key for key in model.state_dict())  # rebuilt from the name, never stored
    assert create_model("mobilenetv3_large", num_classes=2).frequency_channel is None


def test_a_checkpoint_rebuilds_the_model_it_names_for_its_input(tmp_path):
    from mix2.config import default_config
    from mix2.inference import load_trained_model
    from mix2.training import Classifier

    config = default_config("data")
    config.train.model, config.features.n_mels = "mobilenetv3_large_bandnorm", 64
    torch.manual_seed(0)
    module = Classifier(config.to_dict(), ["a", "b"]).train()
    x = torch.rand(4, 1, 64, 94)
    module(x)  # batch-norm statistics that differ from a new model's
    module.eval()
    path = tmp_path / "model.ckpt"
    torch.save({"hyper_parameters": dict(module.hparams), "state_dict": module.state_dict()}, path)
    network = load_trained_model(path).network
    assert network.band_norm.num_features == 64
    torch.testing.assert_close(network(x), module(x))


def test_a_call_with_no_stage_to_run_returns_its_input_so_a_compiled_network_stays_one_graph():
    torch._dynamo.reset()
    model = create_model("mobilenetv3_large", num_classes=3).train()
    x = torch.rand(2, 1, 128, 64)
    embedding = model(x, stop="embedding")
    assert model(x, stop="input") is x and model(embedding, start="embedding", stop="embedding") is embedding
    model.compile(backend="eager")  # Dynamo's tracing, without inductor's minutes of code generation
    model(x, stop="input")  # Mixup's call: were it a call, Dynamo would skip forward from then on
    logits, _ = model.forward_with_embedding(x)
    assert counters["stats"]["unique_graphs"] == 1 and counters["frames"]["ok"] == 1  # the whole forward, once
    torch.testing.assert_close(logits, model.forward(x))  # forward itself, not compiled: the same logits
