"""nnU-Net v2's plain-convolution and residual-encoder U-Nets, rebuilt from a plan's
architecture description with nnU-Net's own parameter names, so that its checkpoints load
strictly (every tensor used, every shape equal).

Names follow nnU-Net's layout: a convolution block keeps its conv, norm and nonlinearity both
as attributes and inside ``all_modules`` (so each parameter has two names), and the decoder
keeps a reference to the encoder (``decoder.encoder.*``), as nnU-Net's checkpoints do. A stage
downsamples by the stride of its first convolution; the decoder upsamples by a transposed
convolution, concatenates [upsampled, skip], and its last 1x1 convolution gives the logits.
"""

from __future__ import annotations

from typing import List

import torch
from torch import nn


def _ops(arch: dict):
    dim = 3 if arch["conv_op"].endswith("3d") else 2
    conv = nn.Conv3d if dim == 3 else nn.Conv2d
    norm = nn.InstanceNorm3d if dim == 3 else nn.InstanceNorm2d
    slope = float((arch.get("nonlin_kwargs") or {}).get("negative_slope", 0.01))
    act = (lambda: nn.LeakyReLU(slope, inplace=True)) if "LeakyReLU" in arch["nonlin"] else (lambda: nn.ReLU(inplace=True))
    nkw = arch.get("norm_op_kwargs") or {}
    return dim, conv, (lambda c: norm(c, eps=float(nkw.get("eps", 1e-5)), affine=bool(nkw.get("affine", True)))), act


class ConvBlock(nn.Module):
    """conv -> norm -> (nonlinearity); ``all_modules`` holds the same layers in order."""

    def __init__(self, ops, cin: int, cout: int, kernel, stride, bias: bool, nonlin: bool = True):
        super().__init__()
        _dim, conv, norm, act = ops
        self.conv = conv(cin, cout, list(kernel), list(stride), padding=[(k - 1) // 2 for k in kernel], bias=bias)
        self.norm = norm(cout)
        layers = [self.conv, self.norm]
        if nonlin:
            self.nonlin = act()
            layers.append(self.nonlin)
        self.all_modules = nn.Sequential(*layers)

    def forward(self, x):
        return self.all_modules(x)


def _chain(block, ops, n: int, cin: int, cout: int, kernel, stride, bias: bool) -> nn.Sequential:
    """``n`` blocks from ``cin`` to ``cout`` channels; only the first changes width and stride."""
    ones = [1] * len(kernel)
    return nn.Sequential(*[block(ops, cin if i == 0 else cout, cout, kernel, stride if i == 0 else ones, bias) for i in range(n)])


class StackedConvs(nn.Module):
    """``n`` ConvBlocks; the first one carries the stride."""

    def __init__(self, ops, n: int, cin: int, cout: int, kernel, stride, bias: bool):
        super().__init__()
        self.convs = _chain(ConvBlock, ops, n, cin, cout, kernel, stride, bias)

    def forward(self, x):
        return self.convs(x)


class ResidualBlock(nn.Module):
    """Two convolutions and a skip (average pooling for a stride, a 1x1 projection for a width change)."""

    def __init__(self, ops, cin: int, cout: int, kernel, stride, bias: bool):
        super().__init__()
        dim = ops[0]
        ones = [1] * len(kernel)
        self.conv1 = ConvBlock(ops, cin, cout, kernel, stride, bias)
        self.conv2 = ConvBlock(ops, cout, cout, kernel, ones, bias, nonlin=False)
        self.nonlin2 = ops[3]()
        skip = []
        if any(s != 1 for s in stride):
            skip.append((nn.AvgPool3d if dim == 3 else nn.AvgPool2d)(list(stride), list(stride)))
        if cin != cout:
            skip.append(ConvBlock(ops, cin, cout, ones, ones, False, nonlin=False))
        self.skip = nn.Sequential(*skip) if skip else None

    def forward(self, x):
        residual = self.skip(x) if self.skip is not None else x
        return self.nonlin2(self.conv2(self.conv1(x)) + residual)


class ResidualStage(nn.Module):
    def __init__(self, ops, n: int, cin: int, cout: int, kernel, stride, bias: bool):
        super().__init__()
        self.blocks = _chain(ResidualBlock, ops, n, cin, cout, kernel, stride, bias)

    def forward(self, x):
        return self.blocks(x)


class Encoder(nn.Module):
    def __init__(self, arch: dict, in_channels: int):
        super().__init__()
        ops = _ops(arch)
        n, feats, ks, st, bias = arch["n_stages"], arch["features_per_stage"], arch["kernel_sizes"], arch["strides"], bool(arch["conv_bias"])
        if arch["network"] == "ResidualEncoderUNet":
            self.stem = StackedConvs(ops, 1, in_channels, feats[0], ks[0], [1] * len(ks[0]), bias)
            blocks = arch["n_blocks_per_stage"]
            self.stages = nn.Sequential(*[ResidualStage(ops, blocks[s], feats[0] if s == 0 else feats[s - 1], feats[s], ks[s], st[s], bias) for s in range(n)])
        else:
            self.stem = None
            convs = arch["n_conv_per_stage"]
            self.stages = nn.Sequential(*[nn.Sequential(StackedConvs(ops, convs[s], in_channels if s == 0 else feats[s - 1], feats[s], ks[s], st[s], bias)) for s in range(n)])

    def forward(self, x) -> List[torch.Tensor]:
        if self.stem is not None:
            x = self.stem(x)
        skips = []
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return skips


class Decoder(nn.Module):
    def __init__(self, arch: dict, encoder: Encoder, num_classes: int):
        super().__init__()
        ops = _ops(arch)
        dim, conv = ops[0], ops[1]
        self.encoder = encoder  # nnU-Net's checkpoints name the encoder's parameters here too
        feats, ks, st, bias = arch["features_per_stage"], arch["kernel_sizes"], arch["strides"], bool(arch["conv_bias"])
        up = nn.ConvTranspose3d if dim == 3 else nn.ConvTranspose2d
        self.stages, self.transpconvs, self.seg_layers = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for s in range(1, arch["n_stages"]):
            below, skip = feats[-s], feats[-(s + 1)]
            self.transpconvs.append(up(below, skip, list(st[-s]), list(st[-s]), bias=bias))
            self.stages.append(StackedConvs(ops, arch["n_conv_per_stage_decoder"][s - 1], 2 * skip, skip, ks[-(s + 1)], [1] * dim, bias))
            self.seg_layers.append(conv(skip, num_classes, 1, 1, 0, bias=True))

    def forward(self, skips):
        x = skips[-1]
        for s in range(len(self.stages)):
            x = self.transpconvs[s](x)
            x = torch.cat((x, skips[-(s + 2)]), 1)
            x = self.stages[s](x)
        return self.seg_layers[-1](x)  # the full-resolution head; the others serve deep supervision only


class NnUNet(nn.Module):
    """The network of an nnU-Net v2 architecture description (see :mod:`.plans`); logits."""

    def __init__(self, arch: dict, in_channels: int, num_classes: int):
        super().__init__()
        self.encoder = Encoder(arch, in_channels)
        self.decoder = Decoder(arch, self.encoder, num_classes)

    def forward(self, x):
        return self.decoder(self.encoder(x))
