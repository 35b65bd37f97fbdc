"""Inference-only rewrites of a trained model that keep its outputs to float rounding.

:func:`fold_batch_norm` folds each batch norm into the convolution before it, using
``torch.nn.utils.fusion.fuse_conv_bn_eval``: at inference a batch norm is a fixed per-channel
scale and shift, so the convolution can apply it. MobileNetV3-Large has 46 batch norms; folding
them made a CPU inference 1.2x to 1.5x faster in the runs of ``benchmarks/speed.py`` here.

Example:
    >>> import torch
    >>> from mix2.models import create_model
    >>> model = create_model("mobilenetv3_large", num_classes=3).eval()
    >>> folded = fold_batch_norm(model)
    >>> x = torch.rand(2, 1, 64, 64)
    >>> torch.allclose(folded(x), model(x), atol=1e-5)
    True
"""

from __future__ import annotations

import copy
from itertools import pairwise

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode, each ``Conv2d`` followed by a ``BatchNorm2d`` merged into one conv.

    A pair is folded where the two are consecutive children of one container (as in
    ``nn.Sequential``); the batch norm becomes ``nn.Identity``. ``model`` is left unchanged.
    """
    folded = copy.deepcopy(model).eval()
    for parent in folded.modules():
        names = list(parent._modules)
        for first, second in pairwise(names):
            conv, norm = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                parent._modules[first] = fuse_conv_bn_eval(conv, norm)
                parent._modules[second] = nn.Identity()
    return folded
