"""ADD loss: exact values by hand, gradients, invariances and guards."""

import math

import numpy as np
import pytest
import torch

from mix2.config import AddSettings, LossConfig, MixingConfig
from mix2.losses import AddWeights, add_hard, add_soft, create_loss, positive_weights, weighted_mean_std
from mix2.mixing import create_mixer
from mix2.models import create_model

# Four unit vectors and two classes. Pairs i < j, cosine distance d = 1 - cos:
#   same class: (0,1) cos 0.6 -> d 0.4 -> d^2 0.16;   (2,3) cos 0 -> d 1 -> d^2 1
#   other:      (0,2) d 1 -> (1-d)^2 0;  (0,3) d 2 -> 1;  (1,2) d 0.2 -> 0.64;  (1,3) d 1.6 -> 0.36
Z = torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [-1.0, 0.0]], dtype=torch.float64)
CLASSES = torch.tensor([0, 0, 1, 1])
MU_P, SIGMA_P = 0.58, 0.84 / math.sqrt(2)
MU_N = 0.5
SIGMA_N = math.sqrt((0.25 + 0.25 + 0.14**2 + 0.14**2) / 3)


@pytest.mark.parametrize(
    "weights, expected",
    [
        (AddWeights(1, 0, 0, 0), MU_P),
        (AddWeights(0, 1, 0, 0), SIGMA_P),
        (AddWeights(0, 0, 1, 0), MU_N),
        (AddWeights(0, 0, 0, 1), SIGMA_N),
        (AddWeights(1, 2, 3, 4), MU_P + 2 * SIGMA_P + 3 * MU_N + 4 * SIGMA_N),
    ],
)
def test_hard_form_terms_by_hand(weights, expected):
    assert add_hard(Z, CLASSES, weights).item() == pytest.approx(expected, abs=1e-9)


def test_soft_form_by_hand_and_equal_to_hard_sigma_p_on_one_hot_labels():
    one_hot = torch.nn.functional.one_hot(CLASSES, 2).double()
    loss_mu = (0.4**2 + 1.0**2 + 0.0**2 + 1.0**2 + 0.8**2 + 0.6**2) / 6  # (d_label - d_embedding)^2 per pair
    assert add_soft(Z, one_hot, AddWeights(1, 0)).item() == pytest.approx(loss_mu, abs=1e-9)
    assert add_soft(Z, one_hot, AddWeights(0, 1)).item() == pytest.approx(SIGMA_P, abs=1e-9)


def test_gradcheck_in_float64():
    torch.manual_seed(0)
    z = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    soft = torch.rand(5, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda e: add_soft(e, soft), (z,))
    assert torch.autograd.gradcheck(lambda e: add_hard(e, torch.tensor([0, 0, 1, 1, 2])), (z,))


def test_invariant_to_the_embeddings_scale():
    torch.manual_seed(1)
    z, soft = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, 3, dtype=torch.float64)
    torch.testing.assert_close(add_soft(3.7 * z, soft), add_soft(z, soft))
    torch.testing.assert_close(
        add_hard(0.01 * z, torch.tensor([0, 1, 0, 1, 2, 2])), add_hard(z, torch.tensor([0, 1, 0, 1, 2, 2]))
    )


def test_distance_term_vanishes_when_geometries_agree():
    labels = torch.tensor([[1.0, 0, 0], [0, 1, 1], [0.3, 0.7, 0], [1, 1, 1]], dtype=torch.float64)
    embedding = torch.cat([2 * labels, torch.zeros(4, 5, dtype=torch.float64)], dim=1)  # same directions, other space
    assert add_soft(embedding, labels, AddWeights(mu=1, sigma_p=0)).item() == pytest.approx(0, abs=1e-12)
    assert add_soft(torch.eye(4, dtype=torch.float64), labels, AddWeights(mu=1, sigma_p=0)).item() > 0.01


def test_guards_never_give_nan():
    distinct = add_hard(torch.randn(3, 4), torch.tensor([0, 1, 2]))  # no same-class pair
    one_pair = add_hard(torch.randn(3, 4), torch.tensor([0, 0, 1]), AddWeights(0, 1, 0, 0))  # one: sigma_p undefined
    zeros = add_soft(torch.zeros(4, 4, requires_grad=True), torch.rand(4, 2))
    assert torch.isfinite(distinct) and one_pair.item() == 0 and torch.isfinite(zeros)
    zeros.backward()
    assert weighted_mean_std(torch.tensor([2.0]))[1].item() == 0


def test_clips_with_no_species_are_left_out():
    torch.manual_seed(2)
    z, targets = torch.randn(6, 4, dtype=torch.float64), torch.rand(6, 3, dtype=torch.float64)
    targets[[1, 4]] = 0
    keep = torch.tensor([0, 2, 3, 5])
    torch.testing.assert_close(add_soft(z, targets), add_soft(z[keep], targets[keep]))
    assert add_soft(z[:2], torch.zeros(2, 3, dtype=torch.float64)).item() == 0


def test_bce_plus_add_is_bce_plus_exactly_the_configured_add_terms():
    torch.manual_seed(0)
    logits, one_hot = torch.randn(4, 2, dtype=torch.float64), torch.nn.functional.one_hot(CLASSES, 2).double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, one_hot)
    hard = create_loss(LossConfig(name="bce+add", add=AddSettings(form="hard", lambda_mu=1, lambda_sigma_p=2,
                                                                  lambda_mu_n=3, lambda_sigma_n=4, weight=0.5)))  # fmt: skip
    expected = bce + 0.5 * (MU_P + 2 * SIGMA_P + 3 * MU_N + 4 * SIGMA_N)
    assert hard(logits, one_hot, Z).item() == pytest.approx(expected.item(), abs=1e-9)
    soft = create_loss(LossConfig(name="bce+add", add=AddSettings(lambda_mu=2, lambda_sigma_p=3, weight=1.0)))
    loss_mu = (0.4**2 + 1.0**2 + 0.0**2 + 1.0**2 + 0.8**2 + 0.6**2) / 6
    terms = soft.terms(logits, one_hot, Z)
    assert terms["bce"].item() == pytest.approx(bce.item(), abs=1e-12)
    assert terms["add"].item() == pytest.approx(2 * loss_mu + 3 * SIGMA_P, abs=1e-9)
    assert soft(logits, one_hot, Z).item() == pytest.approx(bce.item() + 2 * loss_mu + 3 * SIGMA_P, abs=1e-9)
    default = create_loss(LossConfig(name="bce+add")).terms(logits, one_hot, Z)["add"]  # 0.1, measured on NIPS4B
    assert default.item() == pytest.approx(0.1 * (loss_mu + SIGMA_P), abs=1e-9)


def test_positive_weights_scale_each_class_positives_in_bce():
    counts, clips = np.array([1, 9, 0]), 10
    torch.testing.assert_close(positive_weights(counts, clips, "balanced"), torch.tensor([9.0, 1 / 9, 1.0]))
    torch.testing.assert_close(positive_weights(counts, clips, "sqrt"), torch.tensor([3.0, 1 / 3, 1.0]))
    torch.testing.assert_close(positive_weights(counts, clips, "none"), torch.ones(3))
    logits, targets = torch.zeros(2, 3), torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])
    weighted = create_loss("bce", positive_weights(counts, clips, "balanced"))(logits, targets)
    # log 2 per output; class 0's one positive weighs 9 and class 2's weighs 1: (9 + 1 + 1 + 1 + 1 + 1) / 6
    assert weighted.item() == pytest.approx(math.log(2) * 14 / 6, rel=1e-6)


def test_bce_plus_add_with_mixed_targets_trains():
    torch.manual_seed(0)
    loss = create_loss(LossConfig(name="bce+add"))
    model = create_model("mobilenetv3_large", num_classes=3, bn_momentum=0.1)
    x, y = torch.rand(4, 1, 32, 48), torch.tensor([[1.0, 0, 0], [0, 1, 1], [0, 0, 0], [1, 0, 1]])
    out = create_mixer(MixingConfig(method="multimix"))(model, x, y)
    value = loss(out.logits, out.targets, out.embedding)
    bce = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, out.targets)
    assert torch.isfinite(value) and value > bce
    value.backward()
    assert model.stem[0].weight.grad.abs().sum() > 0


def test_hard_form_refuses_mixed_targets():
    with pytest.raises(ValueError, match="one class per clip"):
        create_loss(LossConfig(name="bce+add", add=AddSettings(form="hard")))(
            torch.zeros(2, 2), torch.tensor([[0.5, 0.5], [1, 0]]), torch.randn(2, 4)
        )
