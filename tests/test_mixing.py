"""Mixers: weights read back from one-hot batches, targets mixed with exactly the same weights."""

import pytest
import torch
from scipy.stats import chisquare
from torch import nn

from mix2.config import MixingConfig
from mix2.mixing import Mix2, create_mixer, pair_weights
from mix2.models import create_model

METHODS = ["none", "mixup", "manifold_mixup", "multimix", "mix2"]


class Probe(nn.Module):
    """Stages that change nothing: the embedding is the flattened input, so it shows the mix."""

    stages = ("input", "block1", "embedding", "logits")

    def forward(self, x, start="input", stop="logits"):
        for stage in self.stages[self.stages.index(start) + 1 : self.stages.index(stop) + 1]:
            x = x.flatten(1) if stage == "embedding" else x
        return x

    def forward_with_embedding(self, x, start="input"):
        embedding = self(x, start=start, stop="embedding")
        return embedding, embedding


def one_hot_batch(batch):
    """Inputs ``(batch, 1, 1, batch)`` and targets ``(batch, batch)``: example ``i`` is pattern ``i``."""
    return torch.eye(batch).view(batch, 1, 1, batch), torch.eye(batch)


def config(method, **kwargs):
    return MixingConfig(method=method, **kwargs)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 2, 7, 16])
def test_targets_carry_exactly_the_weights_of_the_inputs(method, batch):
    torch.manual_seed(batch)
    x, y = one_hot_batch(batch)
    out = create_mixer(config(method, manifold_stages=["block1", "embedding"]))(Probe(), x, y)
    weights = out.embedding  # row i: how much of each example went into mixed example i
    torch.testing.assert_close(out.targets, weights)
    assert (weights >= 0).all()
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(len(weights)))


def test_none_leaves_the_batch_unchanged():
    x, y = one_hot_batch(5)
    out = create_mixer(config("none"))(Probe(), x, y)
    assert torch.equal(out.embedding, torch.eye(5)) and out.targets is y


@pytest.mark.parametrize("method", ["mixup", "manifold_mixup"])
def test_mixup_pairs_each_example_with_a_permutation_partner(method):
    torch.manual_seed(0)
    x, y = one_hot_batch(9)
    weights = create_mixer(config(method))(Probe(), x, y).embedding
    assert ((weights > 0).sum(dim=1) <= 2).all()
    lambdas = torch.diagonal(weights)
    off_diagonal = weights - torch.diag(lambdas)
    paired = off_diagonal.sum(dim=1) > 0  # rows whose permutation partner is another example
    partners = off_diagonal.argmax(dim=1)[paired]
    assert paired.sum() >= 5
    assert len(set(partners.tolist())) == len(partners)  # a permutation: no example is everyone's partner
    assert len(set(lambdas[paired].tolist())) == int(paired.sum())  # one lambda per example, not one per batch


def test_mixup_lambda_covers_each_whole_example_not_mel_bins():
    torch.manual_seed(0)
    x = torch.arange(1, 6, dtype=torch.float32).view(5, 1, 1, 1).expand(5, 1, 8, 10).contiguous()
    mixer = create_mixer(config("mixup"))
    mix = mixer.draw(5)
    mixed = torch.einsum("mb,b...->m...", mix.weights, x)
    for row in mixed:
        assert torch.allclose(row, row.flatten()[0].expand_as(row))  # one value across all bins and frames


def test_pair_weights_by_hand():
    weights = pair_weights(torch.tensor([0.3, 1.0, 0.8]), torch.tensor([2, 0, 2]))
    expected = torch.tensor([[0.3, 0.0, 0.7], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(weights, expected)


def test_multimix_makes_n_dirichlet_mixes_of_the_whole_batch():
    torch.manual_seed(0)
    x, y = one_hot_batch(6)
    weights = create_mixer(config("multimix", multimix_examples=40))(Probe(), x, y).embedding
    assert weights.shape == (40, 6)
    assert (weights >= 0).all() and torch.allclose(weights.sum(dim=1), torch.ones(40))
    assert ((weights > 1e-3).sum(dim=1) > 2).any()  # beyond pairs
    sparse = create_mixer(config("multimix", multimix_alpha=0.05)).draw(6).weights
    dense = create_mixer(config("multimix", multimix_alpha=50.0)).draw(6).weights
    assert sparse.max(dim=1).values.mean() > dense.max(dim=1).values.mean()  # alpha controls concentration


def test_mix2_choice_frequencies_match_the_configured_probabilities():
    torch.manual_seed(0)
    mixer = create_mixer(config("mix2"))
    for _ in range(10_000):
        mixer.choose()
    observed = [mixer.counts[n] for n in ("mixup", "manifold_mixup", "multimix")]
    assert sum(observed) == 10_000
    assert chisquare(observed, [2_500, 5_000, 2_500]).pvalue > 0.001
    mixer.reset_counts()
    assert sum(mixer.counts.values()) == 0


def test_two_member_mix2_and_bad_settings():
    mixer = create_mixer(config("mix2", mix2_members={"mixup": 0.5, "multimix": 0.5}))
    assert isinstance(mixer, Mix2) and mixer.names == ["mixup", "multimix"]
    with pytest.raises(ValueError, match="mix2 members"):
        create_mixer(config("mix2", mix2_members={"cutmix": 1.0}))
    with pytest.raises(ValueError, match="alpha must be positive"):
        create_mixer(config("mixup", mixup_alpha=0.0))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 3])
def test_gradients_reach_the_first_layer_of_the_real_model(method, batch):
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large", num_classes=4, bn_momentum=0.1).train()
    x, y = torch.rand(batch, 1, 32, 48), torch.randint(0, 2, (batch, 4)).float()
    out = create_mixer(config(method, manifold_stages=["block3", "embedding"]))(model, x, y)
    nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets).backward()
    assert out.logits.shape == out.targets.shape and out.embedding.shape[1] == 960
    assert model.stem[0].weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0
