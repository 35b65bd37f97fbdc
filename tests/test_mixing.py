"""Mixers: weights read back from one-hot batches, targets mixed with exactly the same weights."""

import pytest
import torch
from scipy.stats import chisquare, kstest
from torch import nn

from mix2.config import RunConfig
from mix2.mixing import Mix2, Mixup, class_balanced_partners, create_mixer, pair_weights
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


def config(method, **settings):
    """The mixing settings with ``method``, and each mixer's settings under its name (``mixup={"alpha": 0.5}``)."""
    return RunConfig.from_dict({"mixing": {"method": method, **settings}}).mixing


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 2, 7, 16])
def test_targets_carry_exactly_the_weights_of_the_inputs(method, batch):
    torch.manual_seed(batch)
    x, y = one_hot_batch(batch)
    out = create_mixer(config(method, manifold_mixup={"stages": ["block1", "embedding"]}))(Probe(), x, y)
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


def test_class_balanced_partners_draw_each_class_present_equally_often():
    torch.manual_seed(0)
    # classes 0 (examples 0-4), 1 (examples 4 and 5), 2 (example 6 alone); example 7 has no label.
    targets = torch.zeros(8, 4)
    targets[:5, 0] = targets[4:6, 1] = targets[6, 2] = 1
    draws = torch.cat([class_balanced_partners(targets) for _ in range(2_000)])
    # P(j) = (1/K) sum over j's classes of 1/n_c, with K = 4 (three classes and the unlabelled)
    expected = torch.tensor([1 / 5, 1 / 5, 1 / 5, 1 / 5, 1 / 5 + 1 / 2, 1 / 2, 1, 1]) / 4
    observed = torch.bincount(draws, minlength=8)
    assert chisquare(observed.tolist(), (expected * len(draws)).tolist()).pvalue > 0.001
    uniform = torch.full((8,), len(draws) / 8)  # what a random permutation gives each example
    assert chisquare(observed.tolist(), uniform.tolist()).pvalue < 1e-6
    assert class_balanced_partners(targets[:1]).tolist() == [0]


@pytest.mark.parametrize("method", ["mixup", "manifold_mixup"])
def test_balanced_partners_mix_the_rare_example_into_many_rows(method):
    torch.manual_seed(0)
    batch = 16
    x = torch.eye(batch).view(batch, 1, 1, batch)
    targets = torch.zeros(batch, 2)
    targets[:-1, 0] = targets[-1, 1] = 1  # the last example is the only one of class 1
    rare_share = {}
    for partners in ("random", "balanced"):
        mixer = create_mixer(config(method, partners=partners))
        outputs = [mixer(Probe(), x, targets) for _ in range(200)]
        for out in outputs:
            torch.testing.assert_close(out.targets, out.embedding @ targets)  # targets mixed as the inputs
        rare_share[partners] = torch.stack([(out.embedding[:, -1] > 0).float().mean() for out in outputs]).mean()
    assert rare_share["random"] < 0.15  # in its own row and, as a partner, in one row of 16
    assert 0.45 < rare_share["balanced"] < 0.6  # drawn as the partner of half the rows


def test_mixup_lambda_covers_each_whole_example_not_mel_bins():
    torch.manual_seed(0)
    batch = 6
    x = torch.randn(batch, 1, 8, 10)  # every bin of every example differs
    y = torch.eye(batch)  # the mixed targets read back each example's weight
    out = create_mixer(config("mixup"))(Probe(), x, y)
    assert (out.targets != torch.eye(batch)).any()  # it did mix
    # Each mixed example is its row of weights times the whole examples: one weight per example, for every bin.
    torch.testing.assert_close(out.embedding, out.targets @ x.flatten(1))


class StageRecorder(Probe):
    """A probe that records where each mix happened: the stage the rest of the model resumes from."""

    def __init__(self):
        super().__init__()
        self.stops = []

    def forward_with_embedding(self, x, start="input"):
        self.stops.append(start)
        return super().forward_with_embedding(x, start)


@pytest.mark.parametrize("stages", [["block1"], ["embedding"], ["input", "block1"]])
def test_manifold_mixup_mixes_only_at_its_configured_stages(stages):
    torch.manual_seed(0)
    model = StageRecorder()
    mixer = create_mixer(config("manifold_mixup", manifold_mixup={"stages": stages}))
    for _ in range(60):
        mixer(model, *one_hot_batch(4))
    assert set(model.stops) == set(stages)


def test_mix2_runs_the_member_it_draws_with_the_configured_probabilities():
    torch.manual_seed(0)
    mixer = create_mixer(config("mix2", manifold_mixup={"stages": ["block1"]}))
    model = StageRecorder()
    methods = [mixer(model, *one_hot_batch(4)).method for _ in range(2_000)]
    observed = [methods.count(n) for n in ("mixup", "manifold_mixup", "multimix")]
    assert observed == [mixer.counts[n] for n in ("mixup", "manifold_mixup", "multimix")]
    assert chisquare(observed, [500, 1_000, 500]).pvalue > 0.001
    # and each member mixes where it should: mixup at the input, manifold mixup at block1, MultiMix at the embedding
    assert [model.stops.count(s) for s in ("input", "block1", "embedding")] == observed


def mixup_lambdas(alpha, draws=400, batch=8):
    """Lambdas of the rows whose partner is another example, from ``draws`` mixes."""
    mixer = create_mixer(config("mixup", mixup={"alpha": alpha}))
    lambdas = []
    for _ in range(draws):
        weights = mixer.draw(batch).weights
        diagonal = torch.diagonal(weights)
        lambdas += diagonal[diagonal < 1].tolist()
    return lambdas


@pytest.mark.parametrize("alpha", [0.2, 1.0, 5.0])
def test_mixup_lambdas_follow_beta_alpha_alpha(alpha):
    torch.manual_seed(0)
    lambdas = mixup_lambdas(alpha)
    assert kstest(lambdas, "beta", args=(alpha, alpha)).pvalue > 0.001
    other = 5.0 if alpha < 5.0 else 0.2
    assert kstest(lambdas, "beta", args=(other, other)).pvalue < 1e-6  # another alpha is told apart


@pytest.mark.parametrize("alpha", [0.2, 2.0])
def test_multimix_weights_follow_dirichlet_alpha(alpha):
    torch.manual_seed(0)
    batch = 5
    mixer = create_mixer(config("multimix", multimix={"alpha": alpha, "examples": 200}))
    weights = torch.cat([mixer.draw(batch).weights for _ in range(10)])
    # Each weight of a Dirichlet(alpha, ..., alpha) over `batch` examples is Beta(alpha, (batch - 1) alpha).
    assert kstest(weights[:, 0].tolist(), "beta", args=(alpha, (batch - 1) * alpha)).pvalue > 0.001
    other = 2.0 if alpha < 2.0 else 0.2
    assert kstest(weights[:, 0].tolist(), "beta", args=(other, (batch - 1) * other)).pvalue < 1e-6


def test_pair_weights_by_hand():
    weights = pair_weights(torch.tensor([0.3, 1.0, 0.8]), torch.tensor([2, 0, 2]))
    expected = torch.tensor([[0.3, 0.0, 0.7], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(weights, expected)


def test_multimix_makes_n_dirichlet_mixes_of_the_whole_batch():
    torch.manual_seed(0)
    x, y = one_hot_batch(6)
    weights = create_mixer(config("multimix", multimix={"examples": 40}))(Probe(), x, y).embedding
    assert weights.shape == (40, 6)
    assert (weights >= 0).all() and torch.allclose(weights.sum(dim=1), torch.ones(40))
    assert ((weights > 1e-3).sum(dim=1) > 2).any()  # beyond pairs


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
    mixer = create_mixer(config("mix2", mix2={"members": {"mixup": 0.5, "multimix": 0.5}}))
    assert isinstance(mixer, Mix2) and mixer.names == ["mixup", "multimix"]
    with pytest.raises(ValueError, match="mix2 members"):
        create_mixer(config("mix2", mix2={"members": {"cutmix": 1.0}}))
    with pytest.raises(ValueError, match="alpha must be positive"):
        create_mixer(config("mixup", mixup={"alpha": 0.0}))
    with pytest.raises(ValueError, match="partners must be one of random, balanced, got 'rare'"):
        Mixup(partners="rare")
    with pytest.raises(ValueError, match="balanced partners are drawn from the batch's targets"):
        Mixup(partners="balanced").draw(4)


def test_mix2_with_a_none_member_leaves_that_share_of_steps_unmixed():
    torch.manual_seed(0)
    members = {"none": 0.5, "mixup": 0.125, "manifold_mixup": 0.25, "multimix": 0.125}
    mixer = create_mixer(config("mix2", mix2={"members": members}))
    x, y = one_hot_batch(4)
    outputs = [mixer(Probe(), x, y) for _ in range(2_000)]
    unmixed = [out for out in outputs if out.method == "none"]
    assert all(torch.equal(out.embedding, torch.eye(4)) and out.targets is y for out in unmixed)
    observed = [mixer.counts[name] for name in members]
    assert chisquare(observed, [1_000, 250, 500, 250]).pvalue > 0.001 and len(unmixed) == observed[0]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("batch", [1, 3])
def test_gradients_reach_the_first_layer_of_the_real_model(method, batch):
    torch.manual_seed(0)
    model = create_model("mobilenetv3_large", num_classes=4, bn_momentum=0.1).train()
    x, y = torch.rand(batch, 1, 32, 48), torch.randint(0, 2, (batch, 4)).float()
    out = create_mixer(config(method, manifold_mixup={"stages": ["block3", "embedding"]}))(model, x, y)
    nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets).backward()
    assert out.logits.shape == out.targets.shape and out.embedding.shape[1] == 960
    assert model.stem[0].weight.grad is not None and model.stem[0].weight.grad.abs().sum() > 0
