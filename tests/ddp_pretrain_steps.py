"""Pretrain a few steps on real recordings, for the test that DDP matches one process: ``python ddp_pretrain_steps.py OUT DEVICES``.

As :mod:`ddp_steps` does for training: with ``DEVICES`` 2, Lightning starts a second process
running this script, and both pretrain data-parallel on the CPU (gloo); the first process saves
the weights and the logged losses of each case of :data:`CASES` to ``OUT/<case>.pt``. The test
runs the same cases in one process (:func:`fit`), its global batch in micro-batches of a share,
and compares. Augmentation is off (it draws per process, by design) and the run is in float64
(see :mod:`ddp_steps` for why).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import torch

from ddp_steps import float64_trainer, lightning_quiet
from mix2.contrastive import Pretrainer
from mix2.data.crops import list_recordings
from mix2.pretrain import PretrainData, pretraining_config

CASES = ["none", "mix2", "multimix"]
GLOBAL_BATCH = 8
FROGS = Path(__file__).resolve().parents[2] / "shared" / "data" / "frogs"


def pretrainer(method: str, devices: int) -> Pretrainer:
    """The Pretrainer of one case, its global batch shared by ``devices`` processes (micro-batches of a share in one)."""
    config = pretraining_config([str(FROGS)])
    config.data.window_s, config.features.n_mels = 1.0, 32
    config.augment.specaugment = config.augment.time_shift = False
    config.mixing.method = method
    config.pretrain.crops_per_epoch, config.pretrain.val_crops = 3 * GLOBAL_BATCH, 2 * GLOBAL_BATCH
    config.train.batch_size, config.train.epochs, config.train.warmup_epochs = GLOBAL_BATCH, 1, 0.0
    config.train.accelerator, config.train.devices = "cpu", devices
    config.train.strategy = "ddp" if devices > 1 else "auto"
    config.train.micro_batch_size = GLOBAL_BATCH // 2  # one process: the shares of two devices, one after the other
    config.train.bn_momentum = 1.0  # the network validates with its last batch's statistics, not those of its start
    config.check()
    torch.manual_seed(0)
    return Pretrainer(config.to_dict())


def data(module: Pretrainer) -> PretrainData:
    return PretrainData(list_recordings([FROGS])[0], module.config)


def fit(method: str, devices: int) -> tuple[Pretrainer, dict[str, float]]:
    """Pretrain one epoch (3 steps) of one case; returns the module and the logged losses."""
    module = pretrainer(method, devices)
    fitting = float64_trainer(devices, module.config.train.strategy)
    with lightning_quiet():
        fitting.fit(module, datamodule=data(module))
    return module, {name: float(fitting.callback_metrics[name]) for name in ("train_loss", "val_loss", "val_top1")}


def validate(method: str, state_dict: dict) -> dict[str, float]:
    """The validation of one case's module with ``state_dict`` (the checkpoint's weights), in one process."""
    module = pretrainer(method, devices=1).double()
    module.load_state_dict(state_dict)
    with lightning_quiet():
        (metrics,) = float64_trainer(1).validate(module, datamodule=data(module), verbose=False)
    return metrics


if __name__ == "__main__":
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    out, devices = Path(sys.argv[1]), int(sys.argv[2])
    for method in CASES:
        module, logged = fit(method, devices)
        if module.global_rank == 0:
            torch.save({"state_dict": module.state_dict(), "logged": logged}, out / f"{method}.pt")
