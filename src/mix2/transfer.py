"""Start a run from another checkpoint's network: transfer between datasets, fine-tuning after pretraining.

``train.init`` (``mix2 train --init CHECKPOINT``) names a checkpoint written by ``mix2 train``
(or any checkpoint in its form: the run's configuration and class names under
``hyper_parameters``, the network's weights under ``state_dict`` with the ``model.`` prefix).
Before the first epoch, :meth:`InitSource.copy_into` copies into the new run's network every weight of
the checkpoint's network but the classifier's; of the classifier, the rows (weights and bias)
of the classes both runs name are copied too, and the others keep their fresh initialisation.
A checkpoint with the same classes in the same order thus starts the run exactly where it ended.

The checkpoint must hold the same network (``train.model``) and the same front-end
(``features``): an encoder fed other inputs than it learned on would start from weights that
mean nothing. Both are checked before any work starts (:func:`check_init`).

``train.encoder_lr_factor`` scales the learning rate of everything but the classifier: 1 (the
default) trains the whole network alike; 0.1 fine-tunes the encoder gently; 0 freezes it, batch
norm statistics included, and trains the classifier alone: a linear probe.

Example:
    >>> config = default_config("path/to/my_site")  # doctest: +SKIP
    >>> config.train.init = "runs/anuraset-20261121-193000/checkpoints/best.ckpt"  # doctest: +SKIP
    >>> config.train.encoder_lr_factor = 0.0  # a linear probe  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mix2.config import RunConfig, recipe_for_encoder
from mix2.errors import Mix2Error, input_error
from mix2.files import md5sum
from mix2.inference import load_checkpoint, stored_run

HEAD = "classifier"
"""The attribute of a registered network that holds its classifier: the layer re-made for new classes."""


@dataclass
class InitSource:
    """The checkpoint a run starts from, read once: its path, configuration, classes and network weights."""

    path: Path
    config: RunConfig
    classes: list[str]
    weights: dict[str, torch.Tensor]

    @classmethod
    def load(cls, path: str | Path) -> InitSource:
        """The checkpoint at ``path``, or a one-line error."""
        state = load_checkpoint(path)
        try:
            return cls(Path(path), *stored_run(state, str(path)))
        except (KeyError, TypeError, ValueError, Mix2Error) as err:
            raise input_error(path, f"not a mix2 checkpoint to start a run from ({type(err).__name__}: {err})") from None

    def kept(self, classes: list[str]) -> list[str]:
        """The classes of ``classes`` whose classifier rows this checkpoint gives: those it names too, where it has a classifier."""
        return [name for name in classes if name in self.classes] if f"{HEAD}.weight" in self.weights else []

    def record(self, classes: list[str]) -> dict[str, Any]:
        """What a run keeps of its start: the checkpoint's path and MD5, and the classes whose rows it gave."""
        return {"checkpoint": str(self.path), "md5": md5sum(self.path), "classes_kept": self.kept(classes)}

    def check(self, config: RunConfig) -> None:
        """Refuse, in one line, a checkpoint that cannot start ``config``'s run: another network, another front-end."""
        if self.config.train.model != config.train.model:
            their_recipe = recipe_for_encoder(self.config)
            fits = f", or --recipe {their_recipe}, whose frames and network it has" if their_recipe else ""
            raise input_error(
                self.path,
                f"the --init checkpoint holds a {self.config.train.model} network, this run trains {config.train.model}; "
                f"pass --model {self.config.train.model}{fits}",
            )
        theirs, ours = vars(self.config.features), vars(config.features)
        differing = [f"features.{name} {theirs[name]} against {ours[name]}" for name in ours if theirs[name] != ours[name]]
        if differing:
            their_recipe, our_recipe = recipe_for_encoder(self.config), recipe_for_encoder(config)
            hint = ""
            if their_recipe != our_recipe:
                hint = (
                    f"; it fits --recipe {their_recipe}"
                    if their_recipe
                    else f"; for --recipe {our_recipe}, pretrain with mix2 pretrain --recipe {our_recipe}"
                )
            raise input_error(
                self.path,
                f"the --init checkpoint was trained on another front-end ({'; '.join(differing)}); "
                f"its encoder needs the input it learned on{hint}",
            )

    def copy_into(self, network: nn.Module, classes: list[str]) -> None:
        """Copy the weights into ``network``, a network for ``classes`` (see the module docstring)."""
        head = f"{HEAD}."
        encoder = {name: value for name, value in self.weights.items() if not name.startswith(head)}
        try:
            missing, unexpected = network.load_state_dict(encoder, strict=False)
        except RuntimeError as err:  # a weight of another shape
            raise input_error(
                self.path, f"its network's weights do not fit this run's ({str(err).splitlines()[-1].strip()})"
            ) from None
        if unexpected or any(not name.startswith(head) for name in missing):
            raise input_error(self.path, f"its network's weights do not fit this run's {self.config.train.model}")
        kept = self.kept(classes)
        if kept:
            rows_from = torch.tensor([self.classes.index(name) for name in kept])
            rows_to = torch.tensor([classes.index(name) for name in kept])
            layer = getattr(network, HEAD)
            with torch.no_grad():
                layer.weight[rows_to] = self.weights[f"{head}weight"][rows_from].to(layer.weight.dtype)
                layer.bias[rows_to] = self.weights[f"{head}bias"][rows_from].to(layer.bias.dtype)


def check_init(config: RunConfig) -> None:
    """Refuse, in one line, an init checkpoint that cannot start this run: unreadable, another network, another front-end."""
    if config.train.init is not None:
        InitSource.load(config.train.init).check(config)
