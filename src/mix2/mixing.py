"""Mixing regularisers: Mixup, Manifold Mixup, MultiMix, and Mix2, the mixture of them.

Every mixer draws a *mixing matrix* ``W`` of shape ``(mixed, batch)`` whose rows are convex
weights (non-negative, summing to 1), and a model stage at which to mix. It runs the model up to
that stage, replaces the hidden batch ``h`` by ``W @ h``, runs the rest of the model, and mixes
the targets with the same matrix, ``W @ y``. The loss is then taken against the mixed targets.
Inputs and targets are mixed in one call, so no caller can mix one without the other.

Each mixer's settings sit under its name in :class:`~mix2.config.MixingConfig`
(``mixing.mixup.alpha``, ``mixing.multimix.examples``, ...).

- ``none``: no mixing.
- ``mixup`` (Zhang et al., 2018): in input space; each example ``i`` draws its own
  ``lambda_i ~ Beta(alpha, alpha)`` (alpha 1.0) and its partner from a random permutation:
  ``W = diag(lambda) + diag(1 - lambda) P``. With ``mixing.partners: balanced`` the partners are
  drawn class-balanced within the batch instead (:func:`class_balanced_partners`), after
  Balanced-MixUp (Galdran et al., 2021): rare classes' examples are mixed in far more often.
- ``manifold_mixup`` (Verma et al., 2019): the same, at a stage drawn each step from
  its ``stages`` (default: the 960-d pooled embedding only, as the paper's code does;
  Verma et al.'s own choice among early blocks is e.g. ``["input", "block3", "block6"]``).
- ``multimix`` (Venkataramanan et al., 2023): from the whole batch's embeddings, ``n`` mixed
  examples (default: the batch size), each with weights over all examples drawn from
  ``Dirichlet(alpha)`` (alpha 0.2, as the paper's code).
- ``mix2`` (Moummad et al., 2024): at each step, one of its members, drawn with their
  probabilities (default mixup 0.25, manifold_mixup 0.5, multimix 0.25).

Across processes (multi-GPU training), a mixer acts on the global batch: pass the
:class:`~mix2.distributed.BatchGroup`, and seed every process's mixer alike with
:meth:`Mixer.reseed`, so that all draw the same mix (see :mod:`mix2.distributed`). Draws are
made on the CPU, so a run mixes alike on any device.

Unlike the paper's public code: ``lambda`` is drawn per example and broadcast over each
example's whole input (not over mel bins); the loss uses each example's own weights through
its mixed target (not the batch-average ``lambda``); and ``mixup`` really mixes.

Example:
    >>> import torch
    >>> from mix2.models import create_model
    >>> model = create_model("mobilenetv3_large", num_classes=3)
    >>> mixer = create_mixer(MixingConfig(method="multimix"))
    >>> out = mixer(model, torch.rand(4, 1, 64, 64), torch.eye(3)[[0, 1, 2, 0]])
    >>> out.logits.shape, out.targets.shape, out.embedding.shape, out.method
    (torch.Size([4, 3]), torch.Size([4, 3]), torch.Size([4, 960]), 'multimix')
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from mix2.config import PARTNERS, MixingConfig
from mix2.distributed import ONE_PROCESS, BatchGroup
from mix2.models import StagedModel
from mix2.registry import MIXERS


@dataclass(frozen=True)
class Mix:
    """A drawn mix: convex weights ``(mixed, batch)`` applied at model stage ``stage``."""

    weights: torch.Tensor
    stage: str


@dataclass(frozen=True)
class MixedOutput:
    """What a mixer returns: logits, embedding and targets of the mixed batch, all ``(mixed, ...)``."""

    logits: torch.Tensor
    embedding: torch.Tensor
    targets: torch.Tensor
    method: str


def mix_rows(weights: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``(mixed, batch)`` weights times ``(batch, ...)`` values -> ``(mixed, ...)``, in ``values``' dtype.

    The sum is taken in fp32 at least, with autocast off, so that under bf16 training the
    targets are mixed with exactly the weights drawn and hidden activations are rounded once.
    """
    dtype = torch.promote_types(values.dtype, torch.float32)
    with torch.autocast(values.device.type, enabled=False):
        mixed = torch.einsum("mb,b...->m...", weights.to(dtype), values.to(dtype)).to(values.dtype)
    if values.dim() == 4 and values.is_contiguous(memory_format=torch.channels_last):
        mixed = mixed.contiguous(memory_format=torch.channels_last)  # keep the faster layout
    return mixed


def pair_weights(lambdas: torch.Tensor, partners: torch.Tensor) -> torch.Tensor:
    """Mixup's matrix: row ``i`` puts ``lambdas[i]`` on ``i`` and ``1 - lambdas[i]`` on ``partners[i]``.

    Shapes: ``(batch,)``, ``(batch,)`` -> ``(batch, batch)``. A partner equal to ``i`` leaves
    example ``i`` unmixed.
    """
    batch = lambdas.shape[0]
    weights = torch.zeros(batch, batch, dtype=lambdas.dtype, device=lambdas.device)
    rows = torch.arange(batch, device=lambdas.device)
    weights[rows, rows] += lambdas
    weights[rows, partners] += 1 - lambdas
    return weights


def class_balanced_partners(targets: torch.Tensor) -> torch.Tensor:
    """Each example's Mixup partner, drawn class-balanced within the batch.

    A partner is drawn as a class uniformly among those the batch holds (examples without any
    positive form one class of their own), then one of that class's examples uniformly, with
    replacement. Example ``j`` is drawn with probability ``(1/K) sum_{c of j} 1/n_c`` (``K``
    classes present, ``n_c`` examples of class ``c`` in the batch): the one example of a class
    heard once in the batch is drawn as often as all the examples of a class heard in every clip.
    Draws come from torch's global generator (see :meth:`Mixer.drawing`).

    Shapes: ``(batch, classes)`` targets (positive where ``> 0``) -> ``(batch,)`` partner indices.

    Example:
        >>> _ = torch.manual_seed(0)
        >>> targets = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 1.0]])
        >>> partners = torch.cat([class_balanced_partners(targets) for _ in range(1000)])
        >>> round((partners == 3).float().mean().item(), 1)  # the class-1 example: half the draws
        0.5
    """
    positives = targets > 0
    membership = torch.cat([positives, ~positives.any(dim=1, keepdim=True)], dim=1).to(torch.float64)
    counts = membership.sum(dim=0)
    present = counts > 0
    probabilities = (membership[:, present] / counts[present]).sum(dim=1) / present.sum()
    return torch.multinomial(probabilities, targets.shape[0], replacement=True)


class Mixer:
    """Base class: subclasses draw a :class:`Mix`; :meth:`__call__` applies it to model and targets.

    Draws come from torch's global generator, or from the mixer's own after :meth:`reseed`.
    """

    name = "none"
    generator: torch.Generator | None = None

    def reseed(self, seed: int) -> None:
        """Draw from now on from a generator of its own, seeded with ``seed``."""
        self.generator = torch.Generator().manual_seed(seed)

    @contextlib.contextmanager
    def drawing(self) -> Iterator[None]:
        """Within this block, torch's global CPU generator draws this mixer's numbers (see :meth:`reseed`).

        ``torch.distributions`` samples only from the global generator, so the mixer's state is
        swapped in for the block and back out after it.
        """
        if self.generator is None:
            yield
            return
        with torch.random.fork_rng(devices=[]):
            torch.set_rng_state(self.generator.get_state())
            yield
            self.generator.set_state(torch.get_rng_state())

    def draw(self, batch_size: int, device: torch.device | str = "cpu", targets: torch.Tensor | None = None) -> Mix | None:
        """A mix for a batch of ``batch_size``, or ``None`` for no mixing.

        ``targets`` ``(batch_size, classes)`` are the batch's, for mixers whose draw depends on them.
        """
        return None

    def __call__(
        self, model: StagedModel, x: torch.Tensor, targets: torch.Tensor, group: BatchGroup = ONE_PROCESS
    ) -> MixedOutput:
        """Run ``model`` on ``x`` ``(batch, 1, mels, frames)`` with this step's mix applied.

        With several processes in ``group``, ``x`` and ``targets`` are this process's share of
        the global batch; the mix is drawn over the global batch, and the output holds this
        process's rows of the mixed batch.
        """
        all_targets = group.gather(targets)
        with self.drawing():
            mix = self.draw(all_targets.shape[0], x.device, all_targets)
        if mix is None:
            logits, embedding = model.forward_with_embedding(x)
            return MixedOutput(logits, embedding, targets, self.name)
        weights = mix.weights[group.own_rows(mix.weights.shape[0])]
        hidden = mix_rows(weights, group.gather(model(x, stop=mix.stage)))
        logits, embedding = model.forward_with_embedding(hidden, start=mix.stage)
        return MixedOutput(logits, embedding, mix_rows(weights, all_targets), self.name)


class Mixup(Mixer):
    """Mixup at one of ``stages`` (drawn uniformly each step), ``lambda ~ Beta(alpha, alpha)`` per example.

    ``partners``: ``random`` (a permutation of the batch) or ``balanced``
    (:func:`class_balanced_partners`, which needs the batch's targets).
    """

    def __init__(
        self, alpha: float = 1.0, stages: tuple[str, ...] = ("input",), name: str = "mixup", partners: str = "random"
    ) -> None:
        if alpha <= 0:
            raise ValueError(f"mixup alpha must be positive, got {alpha}")
        if not stages:
            raise ValueError("mixup needs at least one stage")
        if partners not in PARTNERS:
            raise ValueError(f"mixup partners must be one of {', '.join(PARTNERS)}, got {partners!r}")
        self.alpha = alpha
        self.stages = tuple(stages)
        self.name = name
        self.partners = partners

    def draw(self, batch_size: int, device: torch.device | str = "cpu", targets: torch.Tensor | None = None) -> Mix:
        beta = torch.distributions.Beta(torch.tensor(self.alpha), torch.tensor(self.alpha))
        lambdas = beta.sample((batch_size,))
        if self.partners == "balanced":
            if targets is None:
                raise ValueError("balanced partners are drawn from the batch's targets; none were given")
            partners = class_balanced_partners(targets.cpu())
        else:
            partners = torch.randperm(batch_size)
        stage = self.stages[int(torch.randint(len(self.stages), ()))]
        return Mix(pair_weights(lambdas, partners).to(device), stage)


class MultiMix(Mixer):
    """``n_mixed`` examples (default: the batch size), each a ``Dirichlet(alpha)`` mix of the whole batch."""

    name = "multimix"

    def __init__(self, alpha: float = 0.2, n_mixed: int | None = None, stage: str = "embedding") -> None:
        if alpha <= 0:
            raise ValueError(f"multimix alpha must be positive, got {alpha}")
        if n_mixed is not None and n_mixed < 1:
            raise ValueError(f"multimix needs at least one mixed example, got {n_mixed}")
        self.alpha = alpha
        self.n_mixed = n_mixed
        self.stage = stage

    def draw(self, batch_size: int, device: torch.device | str = "cpu", targets: torch.Tensor | None = None) -> Mix:
        dirichlet = torch.distributions.Dirichlet(torch.full((batch_size,), float(self.alpha)))
        weights = dirichlet.sample((self.n_mixed or batch_size,))
        return Mix(weights.to(device), self.stage)


class Mix2(Mixer):
    """At each step, one member mixer drawn with its probability.

    ``counts`` holds how often each member was chosen since the last :meth:`reset_counts`.
    """

    name = "mix2"

    def __init__(self, members: dict[str, Mixer], probabilities: dict[str, float]) -> None:
        if set(members) != set(probabilities) or not members:
            raise ValueError("mix2 needs one probability per member")
        if any(p < 0 for p in probabilities.values()) or sum(probabilities.values()) <= 0:
            raise ValueError(f"mix2 probabilities must be non-negative with a positive sum, got {probabilities}")
        self.members = dict(members)
        self.names = list(members)
        total = sum(probabilities.values())
        self.probabilities = torch.tensor([probabilities[n] / total for n in self.names], dtype=torch.float64)
        self.counts = dict.fromkeys(self.names, 0)

    def reseed(self, seed: int) -> None:
        """Draw the member and its mix from one generator of its own, seeded with ``seed``."""
        super().reseed(seed)
        for member in self.members.values():
            member.generator = self.generator

    def choose(self) -> str:
        """Draw this step's member."""
        with self.drawing():
            name = self.names[int(torch.multinomial(self.probabilities, 1))]
        self.counts[name] += 1
        return name

    def reset_counts(self) -> None:
        self.counts = dict.fromkeys(self.names, 0)

    def __call__(
        self, model: StagedModel, x: torch.Tensor, targets: torch.Tensor, group: BatchGroup = ONE_PROCESS
    ) -> MixedOutput:
        return self.members[self.choose()](model, x, targets, group)


@MIXERS.register("none")
def no_mixing(config: MixingConfig) -> Mixer:
    return Mixer()


@MIXERS.register("mixup")
def mixup(config: MixingConfig) -> Mixer:
    return Mixup(config.mixup.alpha, ("input",), name="mixup", partners=config.partners)


@MIXERS.register("manifold_mixup")
def manifold_mixup(config: MixingConfig) -> Mixer:
    stages = tuple(config.manifold_mixup.stages)
    return Mixup(config.manifold_mixup.alpha, stages, name="manifold_mixup", partners=config.partners)


@MIXERS.register("multimix")
def multimix(config: MixingConfig) -> Mixer:
    return MultiMix(config.multimix.alpha, config.multimix.examples)


@MIXERS.register("mix2")
def mix2(config: MixingConfig) -> Mixer:
    allowed = [name for name in MIXERS.names() if name != "mix2"]  # any registered mixer but Mix2 itself
    unknown = set(config.mix2.members) - set(allowed)
    if unknown:
        raise ValueError(f"mix2 members must be among {', '.join(allowed)}, got {sorted(unknown)}")
    members = {name: MIXERS.create(name, config=config) for name in config.mix2.members}
    return Mix2(members, config.mix2.members)


def create_mixer(config: MixingConfig) -> Mixer:
    """Build the mixer named ``config.method``."""
    return MIXERS.create(config.method, config=config)
