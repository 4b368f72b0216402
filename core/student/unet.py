"""The U-Net (Ronneberger et al., 2015) shared by the student segmenter and the benchmark's supervised baseline.

Four (``depth``) down- and up-steps of two 3×3 convolutions each, 2×2 max-pool down, 2×2 transposed
convolution up, skip connections by concatenation, a 1×1 convolution to one logit; padded convolutions
(output size = input size) and batch norm after every convolution; ``base`` channels at the top, doubling per
step. ``stem_stride`` > 1 runs the network on the input average-pooled by that factor and upsamples the
logits bilinearly: the student uses 2, which costs about a quarter of the full-resolution network, since its
targets (explanation masks) are coarser than a pixel anyway.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["UNet", "dice_bce_loss"]


def _double_conv(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """U-Net with batch norm; input (N, 3, H, W) with H and W divisible by :attr:`granularity`, output logits
    (N, 1, H, W).

    Parameters
    ----------
    base
        Channels of the top level (doubling per level).
    in_channels
        Input channels.
    depth
        Number of down-/up-steps.
    stem_stride
        Average-pool the input by this factor first and upsample the logits back (1: full resolution).
    """

    def __init__(self, base: int = 32, in_channels: int = 3, depth: int = 4, stem_stride: int = 1) -> None:
        super().__init__()
        if base < 1 or depth < 1 or stem_stride < 1:
            raise ValueError(f"invalid U-Net shape: base {base}, depth {depth}, stem stride {stem_stride}")
        widths = [base * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_double_conv(in_channels, widths[0])])
        self.down.extend(_double_conv(widths[i], widths[i + 1]) for i in range(depth))
        self.up = nn.ModuleList(nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2) for i in range(depth))
        self.merge = nn.ModuleList(_double_conv(2 * widths[i], widths[i]) for i in range(depth))
        self.head = nn.Conv2d(widths[0], 1, 1)
        self.base, self.in_channels, self.depth, self.stem_stride = base, in_channels, depth, stem_stride

    @property
    def granularity(self) -> int:
        """Input sides must be multiples of this."""
        return self.stem_stride * 2**self.depth

    def config(self) -> dict:
        """The constructor's arguments (stored with a trained network)."""
        return {"base": self.base, "in_channels": self.in_channels, "depth": self.depth,
                "stem_stride": self.stem_stride}  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel damage logits."""
        size = x.shape[-2:]
        if self.stem_stride > 1:
            x = F.avg_pool2d(x, self.stem_stride)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.depth)):
            x = self.merge[i](torch.cat([skips.pop(), self.up[i](x)], dim=1))
        logits = self.head(x)
        if self.stem_stride > 1:
            logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)
        return logits


def dice_bce_loss(
    logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None, eps: float = 1.0
) -> torch.Tensor:
    """Binary cross-entropy plus soft Dice loss over the whole batch, optionally per-pixel weighted.

    Parameters
    ----------
    logits, target
        (N, 1, H, W); ``target`` in [0, 1].
    weight
        (N, 1, H, W) non-negative pixel weights, 0 = ignored (the student's ignore band); None = all 1.
    """
    if weight is None:
        weight = torch.ones_like(target)
    total = weight.sum().clamp_min(1e-6)
    bce = (F.binary_cross_entropy_with_logits(logits, target, reduction="none") * weight).sum() / total
    prob = torch.sigmoid(logits) * weight
    dice = (2 * (prob * target).sum() + eps) / (prob.sum() + (target * weight).sum() + eps)
    return bce + (1 - dice)
