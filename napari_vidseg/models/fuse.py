"""Fold BatchNorm into the preceding convolution for inference.

In eval mode a BatchNorm is a per-channel affine map, so conv -> BN equals a
single conv with scaled weights and a bias: one pass over the feature map
fewer, which is a measurable share of a CPU forward of a depthwise network.

A conv and a BatchNorm are fused when the BatchNorm is registered right after
the conv in the same parent module (how VidSegNet and its EfficientNet-Lite
encoder are written: `_expand_conv`/`_bn0`, `Sequential(conv, BN, ReLU)`). The
result is checked against the original by the tests.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A new conv equal to bn(conv(x)) with bn in eval mode."""
    fused = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride,
                      conv.padding, conv.dilation, conv.groups, bias=True,
                      padding_mode=conv.padding_mode).to(conv.weight.device)
    with torch.no_grad():
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((bias - bn.running_mean) * scale + bn.bias)
    return fused


def fuse_bn(model: nn.Module, inplace: bool = False) -> nn.Module:
    """An eval-mode copy of `model` with every conv -> BatchNorm pair folded."""
    model = model if inplace else copy.deepcopy(model)
    model.eval()
    for parent in list(model.modules()):
        names = list(parent._modules.keys())
        for a, b in zip(names, names[1:]):
            conv, bn = parent._modules[a], parent._modules[b]
            if (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
                    and bn.num_features == conv.out_channels and bn.track_running_stats):
                parent._modules[a] = fold_conv_bn(conv, bn)
                parent._modules[b] = nn.Identity()
    return model
