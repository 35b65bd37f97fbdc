"""Training over several processes (GPUs, nodes): the global batch they share, and who prepares the run.

mix2 trains data-parallel through Lightning's DDP: each of the ``devices * num_nodes``
processes holds a copy of the model and takes an even share of each batch.

**The batch is global.** ``train.batch_size`` is the batch of the whole job (the paper's 128),
whatever the number of processes. Each step's global batch is the one a single process would
take (:class:`~mix2.training.EpochShuffle`), so results do not depend on how many GPUs ran them.

**Mixing and ADD see the global batch.** Every process draws the same mix from a generator
seeded by ``(seed, epoch)`` (:func:`~mix2.training.mixing_seed`), gathers the hidden batch at
the mixing stage from all processes (:meth:`BatchGroup.gather`, a synchronous all-gather whose
backward sums each row's gradient over the processes), and computes its
own rows of the mixed batch. So Mixup partners and MultiMix's Dirichlet weights range over the
whole global batch, and the ADD loss counts all of its pairs, as with one process or with
micro-batches. BCE is taken over each process's own rows; DDP's gradient average then gives
the gradient of the single-process loss exactly. The cost is one gather of the hidden batch per
step (960 numbers per clip at the embedding; the whole spectrogram for input Mixup) and one of
the embeddings for ADD.

**Batch norm** normalises each device's share by its own statistics, as micro-batches do, so
``N`` devices with a per-device batch ``b`` train like one process over the global batch in
micro-batches of ``b``: the same weights, step by step. Each device's running statistics
(used only at evaluation) are averaged over the devices before every validation, so that
every process validates, and the checkpoint holds, one model. ``sync_batchnorm`` (GPU only)
normalises over the global batch, which is the single-process run itself.

Random draws that act on each clip (SpecAugment, the time shift, dropout) come from a seed per
process, ``(seed, epoch, rank)``; process 0's equals the single-process seed.

Processes start in one of two ways. ``mix2 train --devices N`` on one machine: Lightning starts
the other processes when training begins, each running the same command; the first process
has prepared the run folder by then, and passes its path on in :data:`RUN_DIR_VARIABLE`.
torchrun or SLURM start every process at once: prepare the run folder first, with one process
(``mix2 train ... --run-dir DIR --prepare-only``), then start all of them with
``mix2 train --resume DIR``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist

RUN_DIR_VARIABLE = "MIX2_RUN_DIR"
"""Set by the first process of a Lightning-launched run to its run folder, for the processes it starts."""

# What each launcher sets in the processes it starts: torchrun RANK, SLURM's srun SLURM_PROCID,
# Lightning LOCAL_RANK and NODE_RANK.
_RANK_VARIABLES = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK")


def launcher_ranks() -> dict[str, int]:
    """The ranks a launcher gave this process, by environment variable (empty where none started it)."""
    return {name: int(os.environ[name]) for name in _RANK_VARIABLES if os.environ.get(name)}


def is_first_process() -> bool:
    """Whether this process prepares the run: ``False`` in a process that a launcher started as rank 1 or later.

    Read from the launcher's environment, so it holds before any process group exists.
    """
    return all(rank == 0 for rank in launcher_ranks().values())


@dataclass(frozen=True)
class BatchGroup:
    """The processes that share one global batch, each holding an even share of its rows.

    ``BatchGroup()`` is a single process: :meth:`gather` returns its input and :meth:`own_rows`
    takes every row. :meth:`current` is the group of the running ``torch.distributed`` job.

    Example:
        >>> group = BatchGroup(rank=1, size=2)
        >>> group.own_rows(8)
        slice(4, 8, None)
    """

    rank: int = 0
    size: int = 1

    @classmethod
    def current(cls) -> BatchGroup:
        """The default process group where one is running, else a single process."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    def own_rows(self, rows: int) -> slice:
        """This process's rows of a global batch of ``rows`` (a multiple of :attr:`size`)."""
        if rows % self.size:
            raise ValueError(f"{rows} rows do not split evenly over {self.size} processes")
        share = rows // self.size
        return slice(self.rank * share, (self.rank + 1) * share)

    def gather(self, values: torch.Tensor) -> torch.Tensor:
        """Every process's ``(share, ...)`` rows, joined in rank order: ``(size * share, ...)``.

        Differentiable: the gradient of each process's rows is summed over the processes that
        used them. Keeps channels-last layout.
        """
        if self.size == 1:
            return values
        channels_last = values.dim() == 4 and values.is_contiguous(memory_format=torch.channels_last)
        gathered = _GatherRows.apply(values.contiguous(), self)
        return gathered.contiguous(memory_format=torch.channels_last) if channels_last else gathered

    def gather_arrays(self, values: np.ndarray) -> np.ndarray:
        """Every process's ``(rows, ...)`` array joined in rank order; the row counts may differ."""
        if self.size == 1:
            return values
        parts: list[np.ndarray | None] = [None] * self.size
        dist.all_gather_object(parts, values)
        return np.concatenate(parts)

    def average(self, tensors: list[torch.Tensor]) -> None:
        """Replace each tensor by its mean over the processes, in place (each process must call)."""
        if self.size == 1:
            return
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(self.size)

    def all_true(self, flag: bool, device: torch.device | str = "cpu") -> bool:
        """Whether ``flag`` holds in every process (each process must ask), reduced on ``device``."""
        if self.size == 1:
            return flag
        value = torch.tensor([int(flag)], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MIN)
        return bool(value.item())


class _GatherRows(torch.autograd.Function):
    """Every process's ``(share, ...)`` rows joined in rank order, waited for before anything reads them; backward
    sums the gradient over the processes (one all-reduce) and returns this process's rows of it.

    Written out rather than taken from ``torch.distributed._functional_collectives.all_gather_single``, whose
    asynchronous result and backward left collectives unwaited under gloo, and whose processes crashed with
    heap corruption (``malloc(): unaligned tcache chunk detected``, segmentation faults in the backward pass)
    in about 1 two-process CPU run in 10 on 2026-12-05.
    """

    @staticmethod
    def forward(ctx, values: torch.Tensor, group: BatchGroup) -> torch.Tensor:
        ctx.group = group
        gathered = values.new_empty((group.size * values.shape[0], *values.shape[1:]))
        dist.all_gather_into_tensor(gathered, values)
        return gathered

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        summed = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(summed, op=dist.ReduceOp.SUM)
        return summed[ctx.group.own_rows(summed.shape[0])], None


@dataclass(frozen=True)
class BatchShares:
    """Process ``rank``'s even share of every global batch of ``batch_size`` rows, of ``processes`` processes.

    A last, partial batch is dropped, so that every process takes as many rows; with one process
    (``batch_size`` then unused), every row as it is. Together the processes take the batches one
    process would. A batch size that the processes do not divide is refused at construction.

    Example:
        >>> [BatchShares(4, rank, 2).of(list(range(10))) for rank in (0, 1)]
        [[0, 1, 4, 5], [2, 3, 6, 7]]
        >>> BatchShares(4, 0, 2).length(10)
        4
    """

    batch_size: int | None = None
    rank: int = 0
    processes: int = 1

    def __post_init__(self) -> None:
        if self.processes > 1 and (self.batch_size is None or self.batch_size % self.processes):
            raise ValueError(
                f"a batch shared by {self.processes} processes needs a batch size that they divide, got {self.batch_size}"
            )

    def of(self, order: list[int]) -> list[int]:
        """This process's rows of ``order``."""
        if self.processes == 1:
            return order
        share = self.batch_size // self.processes
        mine = range(self.rank * share, (self.rank + 1) * share)
        return [order[start + i] for start in range(0, len(order) - self.batch_size + 1, self.batch_size) for i in mine]

    def length(self, rows: int) -> int:
        """How many of ``rows`` rows this process takes."""
        if self.processes == 1:
            return rows
        return rows // self.batch_size * (self.batch_size // self.processes)


ONE_PROCESS = BatchGroup()
"""A single process: the default group of the mixers and losses."""

__all__ = ["ONE_PROCESS", "RUN_DIR_VARIABLE", "BatchGroup", "BatchShares", "is_first_process", "launcher_ranks"]
