"""MobileNetV3-Large (Howard et al., 2019) in plain PyTorch, trained from scratch on log-mels.

The layers are torchvision's ``mobilenet_v3_large`` (the same blocks, batch-norm settings and
initialisation); with 3 input channels and torchvision's two-layer classifier it has exactly
torchvision's 5,483,032 parameters. For spectrograms, as in the Mix2 paper's code, the input has
1 channel and the head is the paper's pooling, a mean over frequency, then max plus mean over
time, giving a 960-d embedding, followed by one linear layer.

``mobilenetv3_large_bandnorm`` (``--model``) is the same network with a batch norm per mel band
in the stem stage, before the first convolution, as PANNs' ``bn0`` (Kong et al., 2020): each
band of the input enters with its own learned level and spread. Measured (README, "Does it
learn?"): steadier on the chorus over seeds, no better on NIPS4B's validation split, so not the
default.

``mobilenetv3_large_freqcoord`` adds a second input channel holding each mel band's position,
0 at the lowest band to 1 at the highest (CoordConv, Liu et al., 2018; the frequency-aware CNNs
of Koutini et al., 2019): the paper's head averages the last map over frequency, so without it
the network can tell species apart by pitch only through what its convolutions' padding leaves.
Measured (README, "Does it learn?"): the best of the variants on the chorus, 4 points of
validation mAP under the paper's network on NIPS4B, so not the default.

``mobilenetv3_large_050`` is the same network with half the channels in every layer (timm's name
for MobileNetV3-Large at width 0.5; torchvision's ``width_mult``), a 480-d embedding and a
quarter of the parameters: a training step on a CPU takes half the time, so a fixed budget buys
twice the epochs.

The forward pass runs between named stages, so that mixing methods can stop at a stage, mix,
and resume: ``input``, ``stem``, ``block1`` ... ``block15``, ``features`` (the 960-channel
map; 480 at half width), ``embedding`` (the pooled 960-d vector) and ``logits``.

Example:
    >>> import torch
    >>> model = MobileNetV3Large(num_classes=10)
    >>> spec = torch.rand(2, 1, 128, 376)
    >>> embedding = model(spec, stop="embedding")
    >>> embedding.shape, model(embedding, start="embedding").shape
    (torch.Size([2, 960]), torch.Size([2, 10]))
"""

from __future__ import annotations

import functools
import warnings
from typing import Literal

import torch
from torch import nn

from mix2.registry import MODELS

BN_EPS = 0.001
TORCHVISION_BN_MOMENTUM = 0.01
EMBEDDING_DIM = 960

# (in, kernel, expanded, out, squeeze-excitation, activation, stride): Table 1 of the paper.
LARGE_BLOCKS = [
    (16, 3, 16, 16, False, "RE", 1),
    (16, 3, 64, 24, False, "RE", 2),
    (24, 3, 72, 24, False, "RE", 1),
    (24, 5, 72, 40, True, "RE", 2),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 5, 120, 40, True, "RE", 1),
    (40, 3, 240, 80, False, "HS", 2),
    (80, 3, 200, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 184, 80, False, "HS", 1),
    (80, 3, 480, 112, True, "HS", 1),
    (112, 3, 672, 112, True, "HS", 1),
    (112, 5, 672, 160, True, "HS", 2),
    (160, 5, 960, 160, True, "HS", 1),
    (160, 5, 960, 160, True, "HS", 1),
]
STAGES = ("input", "stem", *[f"block{i}" for i in range(1, len(LARGE_BLOCKS) + 1)], "features", "embedding", "logits")


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, never more than 10% below it (the TF rule)."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def _activation(name: str | None) -> nn.Module | None:
    return {"RE": nn.ReLU(inplace=True), "HS": nn.Hardswish(inplace=True), None: None}[name]


class ConvBNActivation(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> optional ReLU or Hardswish, with "same" padding."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        stride: int = 1,
        groups: int = 1,
        activation: str | None = None,
        bn_momentum: float = TORCHVISION_BN_MOMENTUM,
    ):
        layers: list[nn.Module] = [
            nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout, eps=BN_EPS, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(_activation(activation))
        super().__init__(*layers)


class SqueezeExcitation(nn.Module):
    """Channel gating: global mean -> 1x1 conv -> ReLU -> 1x1 conv -> Hardsigmoid -> scale."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = nn.functional.hardsigmoid(self.fc2(nn.functional.relu(self.fc1(scale))))
        return x * scale


class InvertedResidual(nn.Module):
    """Expand (1x1) -> depthwise (k x k) -> optional squeeze-excitation -> project (1x1), with a skip."""

    def __init__(
        self, cin: int, kernel: int, expanded: int, cout: int, use_se: bool, activation: str, stride: int, bn_momentum: float
    ):
        super().__init__()
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(ConvBNActivation(cin, expanded, 1, activation=activation, bn_momentum=bn_momentum))
        layers.append(
            ConvBNActivation(expanded, expanded, kernel, stride, groups=expanded, activation=activation, bn_momentum=bn_momentum)
        )
        if use_se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(ConvBNActivation(expanded, cout, 1, bn_momentum=bn_momentum))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return out + x if self.use_residual else out


def pool_time_frequency(features: torch.Tensor) -> torch.Tensor:
    """The paper's pooling: ``(batch, channels, freq, time) -> (batch, channels)``.

    Mean over frequency, then max plus mean over time.
    """
    over_frequency = features.mean(dim=2)
    return over_frequency.amax(dim=-1) + over_frequency.mean(dim=-1)


class MobileNetV3Large(nn.Module):
    """MobileNetV3-Large for ``(batch, in_chans, mels, frames)`` inputs.

    Args:
        num_classes: output logits; 0 for an encoder alone (``mix2 pretrain``'s), whose "logits" are empty.
        in_chans: input channels (1 for a log-mel spectrogram).
        head: ``"linear"``, one linear layer on the pooled embedding (the paper's); or
            ``"mlp"``, torchvision's 960 -> 1280 -> classes classifier with dropout.
        dropout: dropout of the ``"mlp"`` head.
        band_norm_mels: where above 0, the input's mel bands (that many) are each normalised by
            their own batch norm before the stem (as PANNs' ``bn0``), so that every band enters
            with a learned level and spread; 0, the paper's, feeds the input as it is.
        frequency_channel_mels: where above 0, the input's mel bands (that many) get a second
            channel beside the spectrogram, each band's position from 0 (lowest) to 1 (highest),
            added in the stem stage, so mixers still see and mix ``in_chans`` channels.
        width: every layer's channels times this (torchvision's and timm's width multiplier,
            rounded by :func:`make_divisible`); 1.0 is the paper's network, 0.5 has a 480-d
            embedding (:attr:`embedding_dim`).
        bn_momentum: batch-norm running-statistics momentum. torchvision uses 0.01 (its
            default here), which averages the statistics over the last ~100 steps' weights.
    """

    stages = STAGES

    def __init__(
        self,
        num_classes: int,
        in_chans: int = 1,
        head: Literal["linear", "mlp"] = "linear",
        dropout: float = 0.2,
        band_norm_mels: int = 0,
        frequency_channel_mels: int = 0,
        bn_momentum: float = TORCHVISION_BN_MOMENTUM,
        width: float = 1.0,
    ):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be above 0, got {width}")
        self.embedding_dim = make_divisible(EMBEDDING_DIM * width)
        self.band_norm = nn.BatchNorm2d(band_norm_mels, eps=BN_EPS, momentum=bn_momentum) if band_norm_mels > 0 else None
        self.frequency_channel: torch.Tensor | None
        # (1, 1, mels, 1), not in the state dict: it is made from the model's name and input height
        self.register_buffer(
            "frequency_channel",
            torch.linspace(0, 1, frequency_channel_mels).view(1, 1, -1, 1) if frequency_channel_mels > 0 else None,
            persistent=False,
        )
        stem_chans = in_chans + (1 if frequency_channel_mels > 0 else 0)
        blocks = [
            (make_divisible(cin * width), kernel, make_divisible(expanded * width), make_divisible(cout * width), *rest)
            for cin, kernel, expanded, cout, *rest in LARGE_BLOCKS
        ]
        self.stem = ConvBNActivation(stem_chans, blocks[0][0], 3, stride=2, activation="HS", bn_momentum=bn_momentum)
        self.blocks = nn.ModuleList(InvertedResidual(*config, bn_momentum=bn_momentum) for config in blocks)
        self.head_conv = ConvBNActivation(blocks[-1][3], self.embedding_dim, 1, activation="HS", bn_momentum=bn_momentum)
        if head == "linear":
            with warnings.catch_warnings():  # 0 classes, a pretrained encoder's: nothing to initialise
                warnings.filterwarnings("ignore", "Initializing zero-element tensors is a no-op")
                self.classifier: nn.Module = nn.Linear(self.embedding_dim, num_classes)
        elif head == "mlp":
            self.classifier = nn.Sequential(
                nn.Linear(self.embedding_dim, 1280),
                nn.Hardswish(inplace=True),
                nn.Dropout(dropout, inplace=True),
                nn.Linear(1280, num_classes),
            )
        else:
            raise ValueError(f"head must be 'linear' or 'mlp', got {head!r}")
        self._initialise()

    def _initialise(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear) and module.weight.numel():
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)

    def _stage(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "stem":
            if self.band_norm is not None:  # (batch, chans, mels, frames): the mels as batch norm's channels
                x = self.band_norm(x.transpose(1, 2)).transpose(1, 2)
            if self.frequency_channel is not None:
                position = self.frequency_channel.to(x.dtype).expand(x.shape[0], 1, x.shape[2], x.shape[3])
                x = torch.cat([x, position], dim=1)
            return self.stem(x)
        if name.startswith("block"):
            return self.blocks[int(name[5:]) - 1](x)
        if name == "features":
            return self.head_conv(x)
        if name == "embedding":
            return pool_time_frequency(x)
        return self.classifier(x)

    def __call__(self, x: torch.Tensor, start: str = "input", stop: str = "logits") -> torch.Tensor:
        """:meth:`forward`, except that no stage to run (``start == stop``: Mixup at the input, Manifold
        Mixup at the embedding) returns ``x`` without calling the module: under ``torch.compile`` a
        call with no operation in it makes Dynamo skip ``forward`` for good, and then compile each
        stage apart until it gives up and runs them eagerly."""
        if start == stop:
            return x
        return super().__call__(x, start=start, stop=stop)

    def forward(self, x: torch.Tensor, start: str = "input", stop: str = "logits") -> torch.Tensor:
        """Run the stages after ``start`` up to and including ``stop``.

        ``x`` is the output of stage ``start``: the spectrogram ``(batch, in_chans, mels,
        frames)`` for ``input``, the embedding ``(batch, 960)`` for ``embedding``.
        """
        first, last = self._index(start), self._index(stop)
        if last < first:
            raise ValueError(f"stage '{stop}' comes before '{start}'")
        for name in STAGES[first + 1 : last + 1]:
            x = self._stage(name, x)
        return x

    def forward_with_embedding(self, x: torch.Tensor, start: str = "input") -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, embedding)`` in one pass from stage ``start``."""
        embedding = self(x, start=start, stop="embedding")
        return self.classifier(embedding), embedding

    @staticmethod
    def _index(stage: str) -> int:
        if stage not in STAGES:
            raise ValueError(f"unknown stage '{stage}'; stages are {', '.join(STAGES)}")
        return STAGES.index(stage)


def mobilenetv3_large(
    num_classes: int,
    n_mels: int = 128,
    in_chans: int = 1,
    head: Literal["linear", "mlp"] = "linear",
    bn_momentum: float = TORCHVISION_BN_MOMENTUM,
    band_norm: bool = False,
    frequency_channel: bool = False,
    width: float = 1.0,
) -> MobileNetV3Large:
    """MobileNetV3-Large for ``n_mels``-high inputs, with a batch norm per mel band at the input
    where ``band_norm``, a channel of each band's position where ``frequency_channel``
    (``band_norm_mels`` and ``frequency_channel_mels`` of :class:`MobileNetV3Large`), and
    ``width`` times the channels."""
    return MobileNetV3Large(
        num_classes=num_classes,
        in_chans=in_chans,
        head=head,
        band_norm_mels=n_mels if band_norm else 0,
        frequency_channel_mels=n_mels if frequency_channel else 0,
        bn_momentum=bn_momentum,
        width=width,
    )


VARIANTS: dict[str, dict[str, bool | float]] = {
    # the paper's network: the input as it is, the last map averaged over frequency (960-d)
    "mobilenetv3_large": {},
    # a batch norm per mel band at the input (as PANNs' bn0)
    "mobilenetv3_large_bandnorm": {"band_norm": True},
    # a second input channel with each mel band's position (CoordConv along frequency)
    "mobilenetv3_large_freqcoord": {"frequency_channel": True},
    # half the channels in every layer (timm's name for the width): a training epoch on a CPU in half the time
    "mobilenetv3_large_050": {"width": 0.5},
}
"""The registered MobileNetV3-Large networks and their settings of :func:`mobilenetv3_large`."""

for _name, _options in VARIANTS.items():
    MODELS.register(_name)(functools.partial(mobilenetv3_large, **_options))
