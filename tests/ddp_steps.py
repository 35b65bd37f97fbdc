"""Train a few steps on tiny features, for the test that DDP matches one process: ``python ddp_steps.py OUT DEVICES``.

With ``DEVICES`` 2, Lightning starts a second process running this script, and both train
data-parallel on the CPU (gloo). For each case of :data:`CASES` the first process saves the
weights, the training loss and the validation loss to ``OUT/<case>.pt``. The test runs the same
cases in one process (:func:`fit`) and compares.

Augmentation and dropout are off: they draw per process, so they differ by design. Training
runs in float64: in float32 the rounding of sums taken in another order (over processes, or
over threads) grows through MobileNetV3's early convolutions, whose weight gradients are small
sums of large terms, to a few per cent of some weights' updates within three steps, which would
hide the maths under test.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch

from mix2 import default_config
from mix2.training import Classifier, RunData

CASES = [
    ("mix2", "bce+add", "random"),
    ("mixup", "bce", "random"),
    ("mixup", "bce", "balanced"),
    ("multimix", "bce+add", "random"),
]
"""Each case: the mixer, the loss, and how Mixup draws its partners (``mixing.partners``)."""
CLASSES = ["a", "b", "c"]
GLOBAL_BATCH = 16
TRAIN_CLIPS, VAL_CLIPS = 48, 11  # three global batches; a validation split the processes share unevenly


def tiny_features(folder: Path) -> tuple[tuple[list[Path], np.ndarray], tuple[list[Path], np.ndarray]]:
    """Training and validation clips of random ``(32, 40)`` features, with multi-hot labels (some empty)."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{i}.npy" for i in range(TRAIN_CLIPS + VAL_CLIPS)]
    features = rng.normal(size=(len(paths), 32, 40)).astype(np.float16)
    labels = (rng.random((len(paths), len(CLASSES))) < 0.4).astype(np.float32)
    for path, values in zip(paths, features):
        if not path.is_file():
            np.save(path, values)
    return (paths[:TRAIN_CLIPS], labels[:TRAIN_CLIPS]), (paths[TRAIN_CLIPS:], labels[TRAIN_CLIPS:])


def classifier(method: str, loss: str, partners: str, devices: int) -> Classifier:
    """The Classifier of one case, its global batch shared by ``devices`` processes (micro-batches of a share in one)."""
    config = default_config("data")
    config.augment.specaugment = config.augment.time_shift = False
    config.mixing.method, config.loss.name, config.mixing.partners = method, loss, partners
    config.train.batch_size, config.train.lr, config.train.epochs = GLOBAL_BATCH, 1e-3, 1
    config.train.accelerator, config.train.devices = "cpu", devices
    config.train.strategy = "ddp" if devices > 1 else "auto"
    config.train.micro_batch_size = GLOBAL_BATCH // 2  # one process: the shares of two devices, one after the other
    config.check()
    torch.manual_seed(0)
    module = Classifier(config.to_dict(), CLASSES)
    for layer in module.modules():
        if isinstance(layer, torch.nn.Dropout):
            layer.p = 0.0
    return module


def fit(folder: Path, method: str, loss: str, partners: str, devices: int) -> tuple[Classifier, dict[str, float]]:
    """Train one epoch of one case; returns the module and the logged losses."""
    module = classifier(method, loss, partners, devices)
    train, val = tiny_features(folder / "features")
    trainer = float64_trainer(devices, module.config.train.strategy)
    with lightning_quiet():
        trainer.fit(module, datamodule=RunData(train, val, module.config.train))
    return module, {name: float(trainer.callback_metrics[name]) for name in ("train_loss", "val_loss", "val_macro_f1")}


def float64_trainer(devices: int, strategy: str = "auto") -> L.Trainer:
    """A quiet float64 trainer of one epoch on ``devices`` CPU processes."""
    return L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=devices,
        strategy=strategy,
        precision="64-true",
        use_distributed_sampler=False,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


@contextlib.contextmanager
def lightning_quiet() -> Iterator[None]:
    """Lightning 2.6 calls a torch pytree API that torch 2.13 deprecates; harmless here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")
        yield


if __name__ == "__main__":
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    out, devices = Path(sys.argv[1]), int(sys.argv[2])
    for case in CASES:
        module, logged = fit(out, *case, devices)
        if module.global_rank == 0:
            torch.save({"state_dict": module.state_dict(), "logged": logged}, out / f"{'-'.join(case)}.pt")
