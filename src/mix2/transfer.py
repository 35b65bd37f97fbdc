"""Start a run from another checkpoint's network: transfer between datasets, fine-tuning after pretraining.

``train.init`` (``mix2 train --init CHECKPOINT``) names a checkpoint written by ``mix2 train``
(or any checkpoint in its form: the run's configuration and class names under
``hyper_parameters``, the network's weights under ``state_dict`` with the ``model.`` prefix).
Before the first epoch, :func:`initialise` copies into the new run's network every weight of
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

from pathlib import Path
from typing import Any

import torch
from torch import nn

from mix2.config import RunConfig
from mix2.errors import Mix2Error, input_error
from mix2.files import md5sum
from mix2.inference import NETWORK_PREFIX, load_checkpoint

HEAD = "classifier"
"""The attribute of a registered network that holds its classifier: the layer re-made for new classes."""


def _source(config: RunConfig) -> tuple[dict[str, Any], RunConfig, list[str]]:
    """The loaded init checkpoint, its configuration and its classes, or a one-line error."""
    path = config.train.init
    state = load_checkpoint(path)
    try:
        settings = dict(state["hyper_parameters"]["config"])
        settings["features"] = {"top_db": None, **settings["features"]}  # as inference reads checkpoints from before top_db
        return state, RunConfig.from_dict(settings, str(path)), list(state["hyper_parameters"]["classes"])
    except (KeyError, TypeError, ValueError, Mix2Error) as err:
        raise input_error(path, f"not a mix2 checkpoint to start a run from ({type(err).__name__}: {err})") from None


def check_init(config: RunConfig) -> None:
    """Refuse, in one line, an init checkpoint that cannot start this run: unreadable, another network, another front-end."""
    if config.train.init is None:
        return
    _, source, _ = _source(config)
    path = config.train.init
    if source.train.model != config.train.model:
        raise input_error(
            path,
            f"the --init checkpoint holds a {source.train.model} network, this run trains {config.train.model}; "
            f"pass --model {source.train.model}",
        )
    theirs, ours = vars(source.features), vars(config.features)
    differing = [f"features.{name} {theirs[name]} against {ours[name]}" for name in ours if theirs[name] != ours[name]]
    if differing:
        raise input_error(
            path,
            f"the --init checkpoint was trained on another front-end ({'; '.join(differing)}); its encoder needs the input it learned on",
        )


def _network_weights(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k[len(NETWORK_PREFIX) :]: v for k, v in state["state_dict"].items() if k.startswith(NETWORK_PREFIX)}


def init_record(config: RunConfig, classes: list[str]) -> dict[str, Any]:
    """What a run keeps of its start (see :func:`initialise`): the checkpoint's path and MD5, and the
    classes whose classifier rows it gives: those of ``classes`` that it names too."""
    state, _, source_classes = _source(config)
    has_head = f"{HEAD}.weight" in _network_weights(state)
    kept = [name for name in classes if name in source_classes] if has_head else []
    return {"checkpoint": str(Path(config.train.init)), "md5": md5sum(config.train.init), "classes_kept": kept}


def initialise(network: nn.Module, config: RunConfig, classes: list[str]) -> None:
    """Copy the weights of ``config.train.init``'s network into ``network`` (see the module docstring)."""
    state, _, source_classes = _source(config)
    weights = _network_weights(state)
    head = f"{HEAD}."
    encoder = {name: value for name, value in weights.items() if not name.startswith(head)}
    try:
        missing, unexpected = network.load_state_dict(encoder, strict=False)
    except RuntimeError as err:  # a weight of another shape
        raise input_error(
            config.train.init, f"its network's weights do not fit this run's ({str(err).splitlines()[-1].strip()})"
        ) from None
    if unexpected or any(not name.startswith(head) for name in missing):
        raise input_error(config.train.init, f"its network's weights do not fit this run's {config.train.model}")
    kept = init_record(config, classes)["classes_kept"]
    if kept:
        rows_from = torch.tensor([source_classes.index(name) for name in kept])
        rows_to = torch.tensor([classes.index(name) for name in kept])
        layer = getattr(network, HEAD)
        with torch.no_grad():
            layer.weight[rows_to] = weights[f"{head}weight"][rows_from].to(layer.weight.dtype)
            layer.bias[rows_to] = weights[f"{head}bias"][rows_from].to(layer.bias.dtype)
