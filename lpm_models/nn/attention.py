"""Attention layers shared by the bidirectional (Base) and causal (Online) models.

Self-attention takes an optional boolean mask and an optional external key/value
context. Keys are returned and cached *before* RoPE (after q/k normalisation); the
caller hands cached keys back together with the Rotation for the positions they should
have in this call, so RoPE is applied at read time with explicit positions. The layer
itself keeps no state: whoever owns the cache (a streaming engine) owns the state.

Cross-attention has one shared query/output projection and one key/value projection
per named source (text, speak audio, listen audio); the per-source attention outputs
are summed, each optionally gated per sample (classifier-free-guidance dropout).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpm_models.nn.rope import RotaryEmbedding, Rotation


@dataclass(frozen=True)
class KVContext:
    """Keys/values produced by earlier calls, stored before RoPE.

    k, v: (B, L, H, head_dim); rotation: read-time positions of those L keys.
    """

    k: Tensor
    v: Tensor
    rotation: Rotation

    @classmethod
    def at_positions(cls, k: Tensor, v: Tensor, positions: Tensor, rope: RotaryEmbedding) -> KVContext:
        """Cached k/v read at explicit positions (N, n_axes), e.g. re-indexed sink + window chunks."""
        return cls(k, v, rope.rotation(positions))

    def __post_init__(self) -> None:
        if self.k.shape != self.v.shape or self.k.shape[1] != len(self.rotation):
            raise ValueError(
                f"KVContext mismatch: k {tuple(self.k.shape)}, v {tuple(self.v.shape)}, {len(self.rotation)} positions"
            )


def masked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention where fully masked query rows return zeros.

    q: (B, H, N, d), k/v: (B, H, L, d), mask: bool broadcastable to (B, H, N, L),
    True = may attend. Returns (B, H, N, d).
    """
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v)
    valid = mask.any(dim=-1, keepdim=True)  # (.., N, 1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | ~valid)
    return out * valid.to(out.dtype)


class SelfAttention(nn.Module):
    """Multi-head self-attention with q/k RMSNorm, RoPE at read time and an external KV context."""

    def __init__(self, dim: int, heads: int, qk_norm: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        self.norm_k = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(
        self,
        x: Tensor,
        rotation: Rotation,
        attn_mask: Tensor | None = None,
        context: KVContext | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """Attend over [context keys | own keys].

        x: (B, N, D); rotation: positions of the N tokens; attn_mask: bool broadcastable
        to (B, H, N, L + N) where L = context length (True = attend); context: cached keys.
        Returns (out (B, N, D), (k, v)) with k, v: (B, N, H, head_dim), k before RoPE.
        """
        b, n, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = self.norm_q(q).view(b, n, self.heads, self.head_dim)
        k = self.norm_k(k).view(b, n, self.heads, self.head_dim)
        v = v.view(b, n, self.heads, self.head_dim)
        q_rot, k_rot, v_all = rotation.apply(q), rotation.apply(k), v
        if context is not None:
            k_rot = torch.cat([context.rotation.apply(context.k), k_rot], dim=1)  # (B, L + N, H, d)
            v_all = torch.cat([context.v, v], dim=1)
        out = masked_attention(q_rot.transpose(1, 2), k_rot.transpose(1, 2), v_all.transpose(1, 2), attn_mask)
        out = out.transpose(1, 2).reshape(b, n, d)
        return self.proj(out), (k, v)


@dataclass(frozen=True)
class CrossSource:
    """One cross-attention source.

    tokens: (B, L, D) already at model width; mask: bool broadcastable to (B, 1, N, L)
    (True = attend) or None; keep: (B,) per-sample multiplier of this source's output
    (0 drops the source for classifier-free guidance) or None.
    """

    tokens: Tensor
    mask: Tensor | None = None
    keep: Tensor | None = None


class MultiSourceCrossAttention(nn.Module):
    """Cross-attention with a shared query and per-source keys/values; outputs summed."""

    def __init__(self, dim: int, heads: int, sources: tuple[str, ...], qk_norm: bool = True, eps: float = 1e-6) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.sources = tuple(sources)
        self.q = nn.Linear(dim, dim)
        self.norm_q = nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity()
        self.kv = nn.ModuleDict({name: nn.Linear(dim, 2 * dim) for name in sources})
        self.norm_k = nn.ModuleDict({name: nn.RMSNorm(dim, eps=eps) if qk_norm else nn.Identity() for name in sources})
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: Tensor) -> Tensor:
        """(B, L, D) -> (B, H, L, head_dim)."""
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(1, 2)

    def forward(self, x: Tensor, contexts: Mapping[str, CrossSource]) -> Tensor:
        """x: (B, N, D); contexts: name -> CrossSource (unknown names are an error,
        absent sources contribute nothing). Returns (B, N, D)."""
        unknown = set(contexts) - set(self.sources)
        if unknown:
            raise KeyError(f"cross-attention sources {sorted(unknown)} not in {self.sources}")
        b, n, d = x.shape
        q = self._heads(self.norm_q(self.q(x)))  # (B, H, N, hd)
        total = torch.zeros_like(q)
        for name, src in contexts.items():
            k, v = self.kv[name](src.tokens).chunk(2, dim=-1)
            k, v = self._heads(self.norm_k[name](k)), self._heads(v)  # (B, H, L, hd)
            out = masked_attention(q, k, v, src.mask)
            if src.keep is not None:
                out = out * src.keep.to(out.dtype).view(b, 1, 1, 1)
            total = total + out
        return self.proj(total.transpose(1, 2).reshape(b, n, d))
