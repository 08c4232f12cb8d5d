"""Causal 3D-conv building blocks of the video VAE.

All tensors here are channel-first video ``(B, C, T, H, W)``. Causality in time: convs pad
only past frames (zeros), norms are per frame (over channels), and temporal down/up
sampling keeps the "first frame alone" convention, so ``1 + 2k`` frames map to ``1 + k``
and back, and frame ``t`` never depends on frames after it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CausalConv3d(nn.Conv3d):
    """Conv3d with 'same' spatial padding and past-only temporal padding.

    forward x: (B, C_in, T, H, W) -> (B, C_out, T, H / stride_h, W / stride_w).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int, int] = (3, 3, 3),
        spatial_stride: int = 1,
    ) -> None:
        super().__init__(in_channels, out_channels, kernel_size, stride=(1, spatial_stride, spatial_stride), padding=0)
        kt, kh, kw = kernel_size
        if spatial_stride == 1:
            self._pad = (kw // 2, kw // 2, kh // 2, kh // 2, kt - 1, 0)
        else:  # asymmetric pad so that H / stride outputs come out exactly
            self._pad = (0, kw - spatial_stride, 0, kh - spatial_stride, kt - 1, 0)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(F.pad(x, self._pad))


class ChannelRMSNorm(nn.Module):
    """RMS norm over channels at every (t, h, w): causal by construction.

    forward x: (B, C, T, H, W) -> same shape.
    """

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + self.eps)
        return out.to(x.dtype) * self.weight.view(1, -1, 1, 1, 1)


class ResBlock3d(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (1x1x1 when widening) skip.

    ``temporal=False`` uses per-frame (1, 3, 3) kernels (cheap high-resolution levels).
    forward x: (B, C_in, T, H, W) -> (B, C_out, T, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, eps: float = 1e-6, temporal: bool = True) -> None:
        super().__init__()
        kernel = (3, 3, 3) if temporal else (1, 3, 3)
        self.norm1 = ChannelRMSNorm(in_channels, eps)
        self.conv1 = CausalConv3d(in_channels, out_channels, kernel)
        self.norm2 = ChannelRMSNorm(out_channels, eps)
        self.conv2 = CausalConv3d(out_channels, out_channels, kernel)
        self.skip = nn.Conv3d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Spatial x2 (strided conv) and/or temporal x2 (first frame alone, then pairs).

    forward x: (B, C, T, H, W) -> (B, C, T', H', W') with T' = 1 + (T - 1) / 2 when
    temporal (T must be odd) and H' = H / 2, W' = W / 2 when spatial.
    """

    def __init__(self, channels: int, spatial: bool, temporal: bool) -> None:
        super().__init__()
        self.spatial = CausalConv3d(channels, channels, (1, 3, 3), spatial_stride=2) if spatial else None
        # time pairs: output i mixes frames (2i - 1, 2i); output 0 sees frame 0 twice
        self.temporal = nn.Conv3d(channels, channels, (2, 1, 1), stride=(2, 1, 1)) if temporal else None

    def forward(self, x: Tensor) -> Tensor:
        if self.spatial is not None:
            x = self.spatial(x)
        if self.temporal is not None:
            if x.shape[2] % 2 == 0:
                raise ValueError(f"temporal downsampling needs 1 + 2k frames, got {x.shape[2]}")
            x = self.temporal(torch.cat([x[:, :, :1], x], dim=2))  # (B, C, (T + 1) / 2, H, W)
        return x


class Upsample(nn.Module):
    """Inverse of Downsample: temporal x2 (drop the leading extra frame), spatial x2.

    The spatial conv (after nearest x2) also maps ``channels -> out_channels``; without a
    spatial step the channel count is unchanged.
    forward x: (B, C, T, H, W) -> (B, C_out, 2T - 1 or T, 2H or H, 2W or W).
    """

    def __init__(self, channels: int, spatial: bool, temporal: bool, out_channels: int | None = None) -> None:
        super().__init__()
        self.out_channels = (out_channels or channels) if spatial else channels
        self.temporal = CausalConv3d(channels, 2 * channels, (3, 1, 1)) if temporal else None
        self.spatial = CausalConv3d(channels, self.out_channels, (1, 3, 3)) if spatial else None

    def forward(self, x: Tensor) -> Tensor:
        if self.temporal is not None:
            b, c, t, h, w = x.shape
            y = self.temporal(x).view(b, 2, c, t, h, w)  # two output frames per input frame
            x = y.permute(0, 2, 3, 1, 4, 5).reshape(b, c, 2 * t, h, w)[:, :, 1:]
        if self.spatial is not None:
            b, c, t, h, w = x.shape
            x = F.interpolate(x, size=(t, 2 * h, 2 * w), mode="nearest")
            x = self.spatial(x)
        return x


def space_to_depth(x: Tensor, p: int) -> Tensor:
    """(B, C, T, H, W) -> (B, C * p * p, T, H / p, W / p)."""
    if p == 1:
        return x
    b, c, t, h, w = x.shape
    x = x.view(b, c, t, h // p, p, w // p, p).permute(0, 1, 4, 6, 2, 3, 5)
    return x.reshape(b, c * p * p, t, h // p, w // p)


def depth_to_space(x: Tensor, p: int) -> Tensor:
    """(B, C * p * p, T, H, W) -> (B, C, T, H * p, W * p); inverse of space_to_depth."""
    if p == 1:
        return x
    b, cpp, t, h, w = x.shape
    c = cpp // (p * p)
    x = x.view(b, c, p, p, t, h, w).permute(0, 1, 4, 5, 2, 6, 3)
    return x.reshape(b, c, t, h * p, w * p)
