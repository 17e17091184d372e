"""SparK's densifying step and light UNet-style decoder."""
from __future__ import annotations

import torch
import torch.nn as nn

from .sparse import mask_at, masked_batch_norm


class Densify(nn.Module):
    """Per scale: normalise the sparse features (over visible positions), fill masked positions
    with a learnable mask token, project to the decoder's width at that scale.

    As in the official SparK code: the deepest scale (stride 32, index 0 in deepest-first order)
    is projected by a 1x1 convolution, or not at all (Identity) when the encoder's width there
    equals the decoder's; strides 16, 8 and 4 by 3x3 convolutions. The projections keep
    PyTorch's default initialisation (the official decoder's init does not reach them); the
    mask tokens are drawn from a normal of std 0.02 truncated at +-0.02."""

    def __init__(self, encoder_widths: list[int], decoder_widths: list[int], sync_bn: bool = False):
        super().__init__()
        self.sync_bn = sync_bn
        self.norms = nn.ModuleList([nn.BatchNorm2d(w) for w in encoder_widths])
        self.mask_tokens = nn.ParameterList(
            [nn.Parameter(torch.zeros(1, w, 1, 1)) for w in encoder_widths])
        for token in self.mask_tokens:
            nn.init.trunc_normal_(token, mean=0.0, std=0.02, a=-0.02, b=0.02)
        self.projections = nn.ModuleList([
            self._projection(i, e, d) for i, (e, d) in enumerate(zip(encoder_widths, decoder_widths))])

    @staticmethod
    def _projection(i: int, cin: int, cout: int) -> nn.Module:
        if i == 0 and cin == cout:
            return nn.Identity()
        k = 1 if i == 0 else 3
        return nn.Conv2d(cin, cout, kernel_size=k, padding=k // 2, bias=True)

    def forward(self, features: list[torch.Tensor], mask: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for feature, norm, token, project in zip(features, self.norms, self.mask_tokens, self.projections):
            m = mask_at(mask, feature.shape[-2:])
            normed = masked_batch_norm(feature, m, norm, self.sync_bn)
            filled = torch.where(m.bool(), normed, token.to(normed.dtype))
            out.append(project(filled))
        return out


class UpBlock(nn.Module):
    """x2 transposed convolution, then conv3x3-BN-ReLU6-conv3x3-BN (no activation at the end)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin, kernel_size=4, stride=2, padding=1, bias=True)
        self.conv = nn.Sequential(
            nn.Conv2d(cin, cin, 3, padding=1, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True),
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout))  # no activation

    def forward(self, x):
        return self.conv(self.up(x))


class LightDecoder(nn.Module):
    """From stride 32 to full resolution in five x2 steps, widths halving from ``width``;
    the densified features of strides 32, 16, 8 and 4 are added on the way (UNet-style)."""

    def __init__(self, width: int = 768, out_channels: int = 3, steps: int = 5):
        super().__init__()
        widths = [width // 2 ** i for i in range(steps + 1)]
        self.widths = widths
        self.blocks = nn.ModuleList([UpBlock(widths[i], widths[i + 1]) for i in range(steps)])
        self.head = nn.Conv2d(widths[-1], out_channels, kernel_size=1)
        self.initialize()

    def initialize(self) -> None:
        """The official SparK decoder's init: convolutions trunc-normal (std 0.02) with zero
        bias, transposed convolutions Kaiming normal (fan_out, relu) with zero bias, BatchNorm
        weight 1 and bias 0."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.ConvTranspose2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.modules.batchnorm._BatchNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, densified: list[torch.Tensor]) -> torch.Tensor:
        """``densified``: deepest first (stride 32, 16, 8, 4) with widths width, width/2, ..."""
        x = 0
        for i, block in enumerate(self.blocks):
            if i < len(densified):
                x = x + densified[i]
            x = block(x)
        return self.head(x)
