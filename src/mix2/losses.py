"""Classification losses, built by name through :data:`mix2.registry.LOSSES`.

Every loss takes ``(logits, targets, embedding)``: targets may be soft (mixed or multi-hot), and
the embedding is there for losses that shape it.

- ``bce``: binary cross-entropy with logits, optionally weighing each class's positives by its
  training counts (``pos_weight``, see :func:`positive_weights`).
- ``bce+add``: BCE plus ``add.weight`` times the angular distance distribution loss (ADD;
  Almudevar et al.) on the L2-normalised 960-d embedding, in its soft-label form (default) or
  its hard-label form; its settings are ``loss.add`` (:class:`~mix2.config.AddSettings`).

Each loss's value is the sum of its named :meth:`~BinaryCrossEntropy.terms` (``bce``, ``add``),
which training logs one by one, so a user sees whether one term swamps the other.

ADD uses the cosine distance ``d(a, b) = 1 - a.b`` between normalised vectors, over the pairs
``i < j`` of a batch (never the diagonal).

**Hard labels** (one class per clip): ``L = l_mu_p mu_p + l_sigma_p sigma_p + l_mu_n mu_n +
l_sigma_n sigma_n``, with mean ``mu`` and unbiased standard deviation ``sigma`` of ``d(z_i, z_j)^2``
over same-class pairs (p) and of ``(1 - d(z_i, z_j))^2`` over other pairs (n).

**Soft labels** (mixed or multi-hot): ``L = l_mu L_mu + l_sigma_p sigma_p`` where ``L_mu`` is the
mean over pairs of ``(d(y_i, y_j) - d(z_i, z_j))^2``, the label vectors normalised too. The
paper leaves ``sigma_p`` to be defined for soft labels; here it is the standard deviation of
``d(z_i, z_j)^2`` over pairs weighted by their label cosine similarity ``1 - d(y_i, y_j)``
(reliability weights), which is exactly the hard form's ``sigma_p`` when labels are one-hot.

**Clips with no species** have no label direction, so their pairs are left out of ADD (BCE
still trains them). Giving "no species" a direction of its own is not possible after mixing:
its weight cannot be recovered from mixed multi-hot targets, and empty clips (rain, wind,
insects, silence) are acoustically diverse, so pulling them to one point would be wrong. An
empty clip mixed with a calling one takes the caller's direction, which is its true label.

Across processes (multi-GPU training, see :mod:`mix2.distributed`), BCE is the mean over each
process's own clips, and ADD is taken over the embeddings and targets gathered from every
process, so that it counts the pairs of the whole global batch.

Guards: a standard deviation over fewer than two pairs (or a weight too small to define it) is
0, never NaN, and zero vectors normalise to zero rather than dividing by zero.

Example:
    >>> import torch
    >>> loss = create_loss("bce")
    >>> float(loss(torch.zeros(2, 3), torch.ones(2, 3), torch.zeros(2, 960)))  # log 2
    0.6931471824645996
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from mix2.config import LossConfig
from mix2.distributed import ONE_PROCESS, BatchGroup
from mix2.registry import LOSSES

EPSILON = 1e-12


def cosine_distances(vectors: torch.Tensor) -> torch.Tensor:
    """``(batch, dim) -> (batch, batch)`` cosine distances ``1 - a.b`` of the L2-normalised rows."""
    unit = nn.functional.normalize(vectors, dim=1, eps=EPSILON)
    return 1 - unit @ unit.T


def upper_pairs(matrix: torch.Tensor) -> torch.Tensor:
    """Values of a ``(batch, batch)`` matrix over the pairs ``i < j``: ``(batch * (batch - 1) / 2,)``."""
    rows, cols = torch.triu_indices(matrix.shape[0], matrix.shape[1], offset=1, device=matrix.device)
    return matrix[rows, cols]


def weighted_mean_std(values: torch.Tensor, weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased standard deviation of ``values`` (reliability ``weights``, 1 if ``None``).

    The mean of no values, and the standard deviation of fewer than two, are 0.
    """
    weights = torch.ones_like(values) if weights is None else weights
    total = weights.sum()
    if total <= EPSILON:
        return values.new_zeros(()), values.new_zeros(())
    mean = (weights * values).sum() / total
    dof = total - weights.square().sum() / total  # n - 1 for unit weights
    if dof <= 1e-6:
        return mean, values.new_zeros(())
    variance = (weights * (values - mean).square()).sum() / dof
    return mean, torch.sqrt(variance.clamp_min(EPSILON))


@dataclass(frozen=True)
class AddWeights:
    """The lambdas of the ADD terms (all 1 by default)."""

    mu: float = 1.0
    sigma_p: float = 1.0
    mu_n: float = 1.0
    sigma_n: float = 1.0


def add_hard(embedding: torch.Tensor, labels: torch.Tensor, weights: AddWeights = AddWeights()) -> torch.Tensor:
    """Hard-label ADD: ``(batch, dim)`` embedding, ``(batch,)`` integer classes -> scalar."""
    distances = upper_pairs(cosine_distances(embedding))
    same = upper_pairs(labels[:, None] == labels[None, :])
    mu_p, sigma_p = weighted_mean_std(distances[same].square())
    mu_n, sigma_n = weighted_mean_std((1 - distances[~same]).square())
    return weights.mu * mu_p + weights.sigma_p * sigma_p + weights.mu_n * mu_n + weights.sigma_n * sigma_n


def add_soft(embedding: torch.Tensor, targets: torch.Tensor, weights: AddWeights = AddWeights()) -> torch.Tensor:
    """Soft-label ADD: ``(batch, dim)`` embedding, ``(batch, classes)`` non-negative targets -> scalar.

    Clips whose target is all zero (no species) are left out; see the module docstring.
    """
    labelled = targets.sum(dim=1) > 0
    embedding, targets = embedding[labelled], targets[labelled]
    if embedding.shape[0] < 2:
        return embedding.sum() * 0  # no pair: a zero that keeps the graph
    embedding_distances = upper_pairs(cosine_distances(embedding))
    label_distances = upper_pairs(cosine_distances(targets))
    loss_mu = (label_distances - embedding_distances).square().mean()
    _, sigma_p = weighted_mean_std(embedding_distances.square(), weights=(1 - label_distances).clamp(0, 1))
    return weights.mu * loss_mu + weights.sigma_p * sigma_p


def positive_weights(train_counts: np.ndarray, train_clips: int, mode: str = "balanced") -> torch.Tensor:
    """BCE's weight on each class's positives, from its training positives: ``(classes,) -> (classes,)``.

    ``balanced`` is negatives over positives, so that a class's positives weigh as much as its
    negatives in all; ``sqrt`` its square root (half way, in log terms); ``none`` all ones. A
    class with no training positive gets 1.

    Example:
        >>> positive_weights(np.array([10, 50, 0]), 100).tolist()
        [9.0, 1.0, 1.0]
        >>> positive_weights(np.array([10, 50, 0]), 100, "sqrt").tolist()
        [3.0, 1.0, 1.0]
    """
    counts = np.asarray(train_counts, dtype=np.float64)
    ratio = np.divide(train_clips - counts, counts, out=np.ones_like(counts), where=counts > 0)
    power = {"none": 0.0, "sqrt": 0.5, "balanced": 1.0}[mode]
    return torch.from_numpy(np.maximum(ratio, 1e-12) ** power).float()


class BinaryCrossEntropy(nn.Module):
    """Mean binary cross-entropy on logits against soft or hard targets, ``(batch, classes)``.

    Every loss takes ``(logits, targets, embedding, group)``; ``group`` (default: :data:`~mix2.distributed.ONE_PROCESS`)
    is the :class:`~mix2.distributed.BatchGroup` whose processes share the batch. Its value is
    the sum of its :meth:`terms`, which training logs one by one.

    Args:
        pos_weight: ``(classes,)`` weight of each class's positives (see :func:`positive_weights`), or ``None`` for 1.
    """

    def __init__(self, pos_weight: Tensor | None = None) -> None:
        super().__init__()
        self.register_buffer("pos_weight", pos_weight, persistent=False)

    def terms(
        self, logits: Tensor, targets: Tensor, embedding: Tensor | None = None, group: BatchGroup = ONE_PROCESS
    ) -> dict[str, Tensor]:
        """The loss's weighted terms by name; they add up to the loss."""
        pos_weight = None if self.pos_weight is None else self.pos_weight.to(logits.dtype)
        return {"bce": nn.functional.binary_cross_entropy_with_logits(logits, targets, pos_weight=pos_weight)}

    def forward(
        self, logits: Tensor, targets: Tensor, embedding: Tensor | None = None, group: BatchGroup = ONE_PROCESS
    ) -> Tensor:
        return sum(self.terms(logits, targets, embedding, group).values())


class BceWithAdd(BinaryCrossEntropy):
    """BCE on the logits plus ``add_weight`` times ADD on the embedding, in its ``soft`` or ``hard`` form."""

    def __init__(
        self, form: str = "soft", weights: AddWeights = AddWeights(), add_weight: float = 1.0, pos_weight: Tensor | None = None
    ) -> None:
        super().__init__(pos_weight)
        if form not in ("soft", "hard"):
            raise ValueError(f"ADD form must be 'soft' or 'hard', got {form!r}")
        if not add_weight >= 0:
            raise ValueError(f"the ADD weight must be 0 or more, got {add_weight!r}")
        self.form = form
        self.weights = weights
        self.add_weight = add_weight

    def terms(
        self, logits: Tensor, targets: Tensor, embedding: Tensor | None = None, group: BatchGroup = ONE_PROCESS
    ) -> dict[str, Tensor]:
        if embedding is None:
            raise ValueError("the ADD loss needs the embedding")
        bce = super().terms(logits, targets)["bce"]
        embedding, targets = group.gather(embedding), group.gather(targets)
        if self.form == "soft":
            return {"bce": bce, "add": self.add_weight * add_soft(embedding, targets, self.weights)}
        one_hot = (targets.sum(dim=1) == 1) & ((targets == 0) | (targets == 1)).all(dim=1)
        if not one_hot.all():
            raise ValueError("the hard form of ADD needs one class per clip; use the soft form for mixed or multi-hot targets")
        return {"bce": bce, "add": self.add_weight * add_hard(embedding, targets.argmax(dim=1), self.weights)}


@LOSSES.register("bce")
def bce(config: LossConfig, pos_weight: Tensor | None = None) -> BinaryCrossEntropy:
    return BinaryCrossEntropy(pos_weight)


@LOSSES.register("bce+add")
def bce_add(config: LossConfig, pos_weight: Tensor | None = None) -> BceWithAdd:
    add = config.add
    weights = AddWeights(add.lambda_mu, add.lambda_sigma_p, add.lambda_mu_n, add.lambda_sigma_n)
    return BceWithAdd(add.form, weights, add.weight, pos_weight)


def create_loss(config: LossConfig | str, pos_weight: Tensor | None = None) -> BinaryCrossEntropy:
    """Build the loss named in ``config`` (or by name, with default settings); ``pos_weight`` as :class:`BinaryCrossEntropy`'s."""
    config = LossConfig(name=config) if isinstance(config, str) else config
    return LOSSES.create(config.name, config=config, pos_weight=pos_weight)
