"""Rotary position embeddings over one or several axes, with explicit positions.

Positions are passed in explicitly (never looked up from a table), so callers can
rotate cached keys at read time with whatever positions the current attention call
assigns them (KV caches store keys *before* RoPE), and can give whole segments of a
sequence an offset (reference images) without any new parameters.

Head dimension layout: the head dimension is split into one contiguous slice per axis;
inside a slice, consecutive pairs ``(x[2i], x[2i+1])`` are rotated by ``pos * freq_i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


def split_head_dim_3d(head_dim: int) -> tuple[int, int, int]:
    """Split a head dimension into (t, h, w) slices, each even; h and w equal.

    Example: 128 -> (44, 42, 42); 32 -> (12, 10, 10).
    """
    if head_dim % 2 or head_dim < 6:
        raise ValueError(f"3D RoPE needs an even head_dim >= 6, got {head_dim}")
    d_hw = 2 * (head_dim // 6)
    return head_dim - 2 * d_hw, d_hw, d_hw


@dataclass(frozen=True)
class Rotation:
    """Cosines and sines for a set of positions, ready to rotate queries or keys.

    cos, sin: (N, head_dim // 2) float32.
    """

    cos: Tensor
    sin: Tensor

    def __len__(self) -> int:
        return self.cos.shape[0]

    def apply(self, x: Tensor) -> Tensor:
        """Rotate ``x``.

        x: (B, N, H, head_dim) -> (B, N, H, head_dim), same dtype as x.
        """
        cos = self.cos[None, :, None, :]  # (1, N, 1, d/2)
        sin = self.sin[None, :, None, :]
        xf = x.float().unflatten(-1, (-1, 2))  # (B, N, H, d/2, 2)
        x1, x2 = xf[..., 0], xf[..., 1]
        out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
        return out.flatten(-2).to(x.dtype)

    @staticmethod
    def cat(rotations: list[Rotation]) -> Rotation:
        """Concatenate rotations along the token axis."""
        return Rotation(torch.cat([r.cos for r in rotations]), torch.cat([r.sin for r in rotations]))


class RotaryEmbedding(nn.Module):
    """Multi-axis RoPE; parameter-free and buffer-free (safe on the meta device).

    axes_dims: per-axis slice widths of the head dimension (each even, sum = head_dim).
    """

    def __init__(self, axes_dims: tuple[int, ...], theta: float = 10000.0) -> None:
        super().__init__()
        if any(d % 2 for d in axes_dims):
            raise ValueError(f"every RoPE axis width must be even, got {axes_dims}")
        self.axes_dims = tuple(axes_dims)
        self.theta = float(theta)

    @property
    def head_dim(self) -> int:
        return sum(self.axes_dims)

    def rotation(self, positions: Tensor) -> Rotation:
        """Angles for explicit positions.

        positions: (N, n_axes) integer or float tensor (negative values allowed).
        Returns a Rotation with cos/sin of shape (N, head_dim // 2).
        """
        if positions.ndim != 2 or positions.shape[1] != len(self.axes_dims):
            raise ValueError(f"positions must be (N, {len(self.axes_dims)}), got {tuple(positions.shape)}")
        pos = positions.to(torch.float64)
        angles = []
        for axis, dim in enumerate(self.axes_dims):
            exponent = torch.arange(0, dim, 2, device=positions.device, dtype=torch.float64) / dim
            freqs = self.theta ** (-exponent)  # (dim/2,)
            angles.append(pos[:, axis : axis + 1] * freqs[None, :])  # (N, dim/2)
        ang = torch.cat(angles, dim=1)  # (N, head_dim/2)
        return Rotation(torch.cos(ang).float(), torch.sin(ang).float())

    def forward(self, x: Tensor, positions: Tensor) -> Tensor:
        """x: (B, N, H, head_dim), positions: (N, n_axes) -> rotated x of the same shape."""
        return self.rotation(positions).apply(x)


def grid_positions(
    frames: int,
    height: int,
    width: int,
    offset: tuple[int, int, int] = (0, 0, 0),
    device: torch.device | str | None = None,
) -> Tensor:
    """(t, h, w) positions of a token grid in t-major, then h, then w order.

    Returns (frames * height * width, 3) int64, each row ``(t + ot, h + oh, w + ow)``.
    """
    t = torch.arange(frames, device=device) + offset[0]
    h = torch.arange(height, device=device) + offset[1]
    w = torch.arange(width, device=device) + offset[2]
    grid = torch.stack(torch.meshgrid(t, h, w, indexing="ij"), dim=-1)  # (T, H, W, 3)
    return grid.reshape(-1, 3)


def segment_positions(
    segments: list[tuple[int, int, int]],
    offsets: list[tuple[int, int, int]],
    device: torch.device | str | None = None,
) -> Tensor:
    """Positions of consecutive token segments, each with its own 3D offset.

    segments: per segment (frames, height, width); offsets: per segment (ot, oh, ow).
    Returns (sum of segment sizes, 3) int64.
    """
    if len(segments) != len(offsets):
        raise ValueError("one offset per segment is required")
    parts = [grid_positions(*seg, offset=off, device=device) for seg, off in zip(segments, offsets)]
    return torch.cat(parts, dim=0)
