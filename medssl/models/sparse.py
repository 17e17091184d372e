"""SparK's sparse encoder for a torchvision ResNet (Tian et al., ICLR 2023).

The ResNet's own modules run densely; after every convolution and pooling the output is
multiplied by the mask at that resolution, and BatchNorm normalises over VISIBLE positions
only. So masked positions hold exactly zero at every stage and nothing computed at visible
positions depends on what lies under the mask. The mask is an argument of ``forward`` (no
global state) and the ResNet's state-dict names are untouched.

Masks are boolean (B, 1, g, g) on the stride-32 grid, True = visible.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.models.resnet import BasicBlock, Bottleneck
from torchvision.ops import StochasticDepth

from .sync_batchnorm import batch_norm

STRIDE = 32


def random_mask(batch: int, grid: int, ratio: float, device=None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random mask on a grid x grid lattice; ``ratio`` of the cells masked (at least
    one, checked from the sizes alone so that no step waits on the device)."""
    if not 0.0 <= ratio < 1.0:
        raise ValueError(f"mask ratio must be in [0, 1), not {ratio}")
    cells = grid * grid
    keep = max(1, round(cells * (1.0 - ratio)))
    if keep >= cells:
        raise ValueError(f"no masked patch: mask ratio {ratio} of a {grid}x{grid} grid masks nothing, "
                         "and the SparK loss needs masked patches")
    noise = torch.rand(batch, cells, generator=generator, device=device)
    order = noise.argsort(dim=1)
    visible = torch.zeros(batch, cells, dtype=torch.bool, device=order.device)
    visible.scatter_(1, order[:, :keep], True)
    return visible.view(batch, 1, grid, grid)


def mask_at(mask: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """The mask at a feature map's resolution (nearest upsampling of the grid), as float."""
    size = (size, size) if isinstance(size, int) else tuple(size)
    if mask.shape[-2:] == size:
        return mask.float()
    return F.interpolate(mask.float(), size=size, mode="nearest")


class MaskPyramid:
    """The mask at every feature-map resolution of one forward pass, each computed once."""

    def __init__(self, mask: torch.Tensor):
        self.mask, self._levels = mask, {}

    def __call__(self, size) -> torch.Tensor:
        size = tuple(size)
        if size not in self._levels:
            self._levels[size] = mask_at(self.mask, size)
        return self._levels[size]


def masked_batch_norm(x: torch.Tensor, m: torch.Tensor, bn: nn.BatchNorm2d,
                      sync: bool = False) -> torch.Tensor:
    """BatchNorm over the visible positions of x (m: float 0/1 mask, (B, 1, H, W)); the output
    is zero where m is 0. In training, batch statistics and running statistics come from
    visible positions only (summed over all processes when ``sync``, gradients included).
    Computed in float32, or in float64 for float64 inputs."""
    return batch_norm(x, bn, mask=m, sync=sync)


class SparseResNet(nn.Module):
    """Runs a torchvision ResNet (its modules, its weights) sparsely under a mask.

    ``forward(x, mask)`` returns the feature maps of layer1..layer4 (strides 4, 8, 16, 32), each
    zero at masked positions. ``drop_path`` applies stochastic depth to residual branches
    (the ResNet's own forward, used after pre-training, has none).
    """

    def __init__(self, resnet: nn.Module, drop_path: float = 0.0, sync_bn: bool = False):
        super().__init__()
        self.resnet = resnet
        self.sync_bn = sync_bn
        blocks = [b for layer in self.layers() for b in layer]
        rates = torch.linspace(0, drop_path, len(blocks)).tolist() if blocks else []
        self.drop_paths = nn.ModuleList([StochasticDepth(r, "row") for r in rates])

    def layers(self):
        return [self.resnet.layer1, self.resnet.layer2, self.resnet.layer3, self.resnet.layer4]

    @property
    def widths(self) -> list[int]:
        return [self._out_channels(layer[-1]) for layer in self.layers()]

    @staticmethod
    def _out_channels(block) -> int:
        return block.bn3.num_features if isinstance(block, Bottleneck) else block.bn2.num_features

    def _bn(self, x, masks: MaskPyramid, bn):
        return masked_batch_norm(x, masks(x.shape[-2:]), bn, self.sync_bn)

    def _masked(self, x, masks: MaskPyramid, module):
        out = module(x)
        return out * masks(out.shape[-2:]).to(out.dtype)

    def _block(self, x, mask, block, drop_path):
        identity = x
        if isinstance(block, Bottleneck):
            convs = [(block.conv1, block.bn1), (block.conv2, block.bn2), (block.conv3, block.bn3)]
        elif isinstance(block, BasicBlock):
            convs = [(block.conv1, block.bn1), (block.conv2, block.bn2)]
        else:
            raise TypeError(f"unsupported ResNet block {type(block).__name__}")
        out = x
        for i, (conv, bn) in enumerate(convs):
            out = self._bn(self._masked(out, mask, conv), mask, bn)
            if i < len(convs) - 1:
                out = block.relu(out)
        if block.downsample is not None:
            conv, bn = block.downsample[0], block.downsample[1]
            identity = self._bn(self._masked(x, mask, conv), mask, bn)
        return block.relu(drop_path(out) + identity)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        r = self.resnet
        mask = MaskPyramid(mask)
        x = x * mask(x.shape[-2:]).to(x.dtype)
        x = r.relu(self._bn(self._masked(x, mask, r.conv1), mask, r.bn1))
        x = self._masked(x, mask, r.maxpool)
        features, k = [], 0
        for layer in self.layers():
            for block in layer:
                x = self._block(x, mask, block, self.drop_paths[k])
                k += 1
            features.append(x)
        return features
