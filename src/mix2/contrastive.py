"""Self-supervised pretraining of the network: two views of a recording told apart from the batch's others.

The objective is SimCLR's (Chen et al., 2020) and COLA's (Saeed et al., 2021), contrastive
learning with the other examples of the batch as negatives, which Moummad et al. (2024) found to
learn bird sounds from unlabelled recordings; chosen over non-contrastive objectives (BYOL-A,
Barlow Twins) because its targets are instance labels, which the project's mixers can mix
without change (i-Mix, Lee et al., 2021).

One step, for a batch of ``B`` pairs of views (:class:`~mix2.data.crops.ViewPairs`):

1. both views go through the run's front-end and augmentation (time shift, SpecAugment);
2. the second view's embeddings (960-d) go through the projection head, 960 -> 512 -> 128
   with batch norm and ReLU between, and are L2-normalised: the keys ``k`` ``(B, 128)``;
3. the first view goes through the run's mixer (:mod:`mix2.mixing`) with the identity
   ``(B, B)`` as its targets: each view is its own class. Mixup mixes the inputs, Manifold
   Mixup the embeddings, MultiMix makes new examples of the embeddings, Mix2 draws one of
   them per step, and the targets are mixed alike;
4. each (mixed) first view's projection ``q`` scores every key, ``q . k / temperature``, and
   the loss is the cross-entropy of those scores against its (mixed) target row: InfoNCE,
   which for an unmixed view is the log-probability of picking its own second view.

Validation scores fixed crops without mixing: the same loss, and ``val_top1``, the fraction of
first views whose nearest key is their own second view.

**Over several processes** (``--devices``, ``--num-nodes``; see :mod:`mix2.distributed`), each
takes its share of every global batch of pairs; the keys are gathered from all of them (the
gather carries gradients back), so each first view is told from the second views of the whole
global batch, and the mixers mix over it, as in one process. Batch norm, in the network and in
the projection head, normalises each process's share, as one process does with
``--micro-batch-size`` set to the share; validation is shared the same way and its sums gathered.

The checkpoint holds the network with no classes (its classifier has 0 outputs) under
``model.``, the projection head under ``projector.``, and the configuration, so that ``mix2
train --init`` starts from its network (:mod:`mix2.transfer`), and ``mix2 embed`` embeds with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from mix2.augment import ClipAugmentation
from mix2.config import RunConfig
from mix2.distributed import ONE_PROCESS, BatchGroup
from mix2.features.frontend import FrontEnd
from mix2.mixing import create_mixer
from mix2.models import StagedModel, network_for, to_layout
from mix2.models.micro_batches import in_chunks, in_micro_batches
from mix2.training import NonFiniteLoss, adamw_with_schedule, log_member_fractions, seed_epoch

PROJECTION_HIDDEN = 512
"""The projection head's hidden width."""


def projection_head(dim: int, embedding_dim: int) -> nn.Sequential:
    """SimCLR's projection head: ``(batch, embedding_dim) -> (batch, dim)``, two linear layers with batch norm and ReLU between."""
    return nn.Sequential(
        nn.Linear(embedding_dim, PROJECTION_HIDDEN, bias=False),
        nn.BatchNorm1d(PROJECTION_HIDDEN),
        nn.ReLU(inplace=True),
        nn.Linear(PROJECTION_HIDDEN, dim),
    )


def info_nce(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(rows, keys)`` scores against ``(rows, keys)`` targets whose rows sum to 1, averaged over rows.

    With one-hot targets it is InfoNCE; with mixed ones, i-Mix's loss.

    Example:
        >>> scores = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
        >>> round(float(info_nce(scores, torch.eye(2))), 4) == round(float(torch.log(1 + torch.exp(torch.tensor(-2.0)))), 4)
        True
    """
    return -(targets * torch.log_softmax(scores, dim=1)).sum(dim=1).mean()


class InstanceScores(nn.Module):
    """A staged model whose "logits" are the similarities of its projected embeddings to fixed keys.

    The stages are the network's up to ``embedding``, then ``logits``: ``(batch, keys)``, each
    ``normalise(projector(embedding)) . key / temperature``. The mixers run it as they run a
    classifier, so that they mix the first views and their instance targets alike.
    """

    def __init__(
        self,
        network: StagedModel,
        projector: Callable[[torch.Tensor], torch.Tensor],
        keys: torch.Tensor,
        temperature: float,
    ) -> None:
        super().__init__()
        self.network, self.projector, self.keys, self.temperature = network, projector, keys, temperature
        self.stages = (*network.stages[: network.stages.index("embedding") + 1], "logits")

    def scores(self, embedding: torch.Tensor) -> torch.Tensor:
        queries = nn.functional.normalize(self.projector(embedding), dim=1)
        return queries @ self.keys.T / self.temperature

    def forward(self, x: torch.Tensor, start: str = "input", stop: str = "logits") -> torch.Tensor:
        if stop != "logits":
            return self.network(x, start=start, stop=stop)
        return self.scores(self.network(x, start=start, stop="embedding"))

    def forward_with_embedding(self, x: torch.Tensor, start: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.network(x, start=start, stop="embedding")
        return self.scores(embedding), embedding


class Pretrainer(L.LightningModule):
    """The network, its projection head, and the contrastive step of the module docstring.

    Args:
        config: the run configuration, as :meth:`RunConfig.to_dict` gives it; ``classes`` are
            stored as ``[]`` beside it, so that the checkpoint reads as a network with no classes.
    """

    def __init__(self, config: dict) -> None:
        super().__init__()
        self.save_hyperparameters({"config": config, "classes": []})
        self.config = RunConfig.from_dict(config)
        self.model = network_for(self.config, 0)
        # No classes, nothing to learn; DDP refuses parameters that no loss reaches. They stay in the
        # optimiser (which skips them), as in checkpoints written before.
        self.model.classifier.requires_grad_(False)
        if self.config.train.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.projector = projection_head(self.config.pretrain.projection_dim, self.model.classifier.in_features)
        self.augment = ClipAugmentation(self.config.augment)
        self.mixer = create_mixer(self.config.mixing)
        self.frontend: FrontEnd | None = None
        self._validation: list[tuple[float, float, int]] = []

    @property
    def chunked_model(self) -> nn.Module:
        """The network, run in chunks of ``train.micro_batch_size`` examples where that is set."""
        return in_micro_batches(self.model, self.config.train.micro_batch_size)

    def project(self, embedding: torch.Tensor) -> torch.Tensor:
        """The projection head on ``(batch, 960)`` embeddings, in the network's micro-batches where set (its batch norm's groups)."""
        return in_chunks(self.projector, embedding, self.config.train.micro_batch_size)

    def _inputs(self, audio: torch.Tensor) -> torch.Tensor:
        """``(batch, samples)`` audio -> the network's input, on the module's device, in its layout and its
        floating-point type (the front-end computes in float32 whatever the network's)."""
        if self.frontend is None or self.frontend.device != self.device:
            self.frontend = FrontEnd(self.config.features, self.device)
        return to_layout(self.frontend(audio.float()).to(self.dtype), self.config.train.channels_last)

    def keys(self, x: torch.Tensor, group: BatchGroup = ONE_PROCESS) -> torch.Tensor:
        """The second views' keys, every process's: ``(share, 1, mels, frames)`` -> ``(global batch, projection_dim)``, L2-normalised."""
        return group.gather(nn.functional.normalize(self.project(self.chunked_model(x, stop="embedding")), dim=1))

    def head(self, keys: torch.Tensor) -> InstanceScores:
        """The network and projection head scoring first views against ``keys``."""
        return InstanceScores(self.chunked_model, self.project, keys, self.config.pretrain.temperature)

    def on_train_epoch_start(self) -> None:
        seed_epoch(self, self.config.train.seed, self.mixer)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> torch.Tensor:
        """This process's share of a global batch of pairs -> the loss of its first views against every key."""
        group = BatchGroup.current()
        first, second = (self.augment(self._inputs(views)) for views in batch)
        keys = self.keys(second, group)
        own_targets = torch.eye(len(keys), device=keys.device)[group.own_rows(len(keys))]  # each view its own class
        mixed = self.mixer(self.head(keys), first, own_targets, group)
        with torch.autocast(first.device.type, enabled=False):  # the loss in fp32 under bf16 training
            loss = info_nce(mixed.logits.float(), mixed.targets.float())
        finite = bool(torch.isfinite(loss))
        if not group.all_true(finite, loss.device):  # every process stops, or the others would wait for it
            value = "NaN or infinite in another process" if finite else loss.item()
            raise NonFiniteLoss(f"the training loss became {value} at epoch {self.current_epoch + 1}")
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(first), sync_dist=True)
        return loss

    def on_train_epoch_end(self) -> None:
        log_member_fractions(self, self.mixer)

    def on_validation_epoch_start(self) -> None:
        """Average each process's batch-norm running statistics, so that every process validates one model."""
        BatchGroup.current().average([buffer for buffer in self.buffers() if buffer.is_floating_point()])

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_index: int) -> None:
        group = BatchGroup.current()
        first, second = (self._inputs(views) for views in batch)
        keys = self.keys(second, group)
        own = group.own_rows(len(keys))
        scores = self.head(keys)(first)
        loss = info_nce(scores.float(), torch.eye(len(keys), device=keys.device)[own])
        hits = (scores.argmax(dim=1) == torch.arange(own.start, own.stop, device=keys.device)).sum()
        self._validation.append((float(loss) * len(first), float(hits), len(first)))

    def on_validation_epoch_end(self) -> None:
        """``val_loss`` and ``val_top1`` over all validation crops of every process (batches weighted by their size)."""
        losses, hits, counts = BatchGroup.current().gather_arrays(np.array(self._validation)).sum(axis=0)
        self._validation.clear()
        if not np.isfinite(losses):
            raise NonFiniteLoss(f"the validation loss became NaN or infinite at epoch {self.current_epoch + 1}")
        self.log("val_loss", losses / counts, sync_dist=True)  # the same in every process
        self.log("val_top1", hits / counts, prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW over the network and the head, with the run's learning-rate schedule."""
        return adamw_with_schedule(self, [{"params": list(self.parameters())}], self.config.train)
