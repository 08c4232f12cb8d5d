"""The LPM transformer block, shared by the Base (bidirectional) and Online (causal) DiTs.

    x = x + g1 * SelfAttn(modulate(LN(x), shift1, scale1))        [refs | video], 3D RoPE
    x = x + CrossAttn(LN'(x), {text, audio})                        summed sources
    x = x + g2 * FFN(modulate(LN(x), shift2, scale2))

Modulation is frame-wise ``(B, S, 6, D)``: the block adds its own ``(6, D)`` offset to
the shared projection of the timestep embedding. Cross-attention applies to the tokens
from ``cross_start`` on (video tokens; reference tokens are identity, not time).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from lpm_models.nn.adaln import gate, modulate
from lpm_models.nn.attention import CrossSource, KVContext, MultiSourceCrossAttention, SelfAttention
from lpm_models.nn.rope import Rotation

MODULATION_CHUNKS = 6  # shift/scale/gate for attention and for the FFN


class FeedForward(nn.Module):
    """Linear -> GELU(tanh) -> Linear. forward x: (B, N, D) -> (B, N, D)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DiTBlock(nn.Module):
    """AdaLN self-attention -> multimodal cross-attention -> AdaLN FFN."""

    def __init__(
        self,
        dim: int,
        heads: int,
        ffn_dim: int,
        cross_sources: tuple[str, ...],
        qk_norm: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.attn = SelfAttention(dim, heads, qk_norm=qk_norm, eps=eps)
        self.norm2 = nn.LayerNorm(dim, eps=eps, elementwise_affine=True)
        self.cross = MultiSourceCrossAttention(dim, heads, cross_sources, qk_norm=qk_norm, eps=eps)
        self.norm3 = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.ffn = FeedForward(dim, ffn_dim)
        self.modulation = nn.Parameter(torch.randn(MODULATION_CHUNKS, dim) / dim**0.5)

    @property
    def cross_sources(self) -> tuple[str, ...]:
        return self.cross.sources

    def forward(
        self,
        x: Tensor,
        mod: Tensor,
        rotation: Rotation,
        cross: Mapping[str, CrossSource],
        cross_start: int = 0,
        attn_mask: Tensor | None = None,
        kv_context: KVContext | None = None,
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """One block.

        x: (B, S * P, D) tokens of S frames (P tokens each); mod: (B, S, 6, D) shared
        modulation (this block adds its own offset); rotation: positions of the S * P
        tokens; cross: sources for tokens ``x[:, cross_start:]``; attn_mask / kv_context:
        see SelfAttention. Returns (x (B, S * P, D), (k, v) of this call, k before RoPE).
        """
        m = (mod.float() + self.modulation.float()[None, None]).to(x.dtype)  # (B, S, 6, D)
        shift1, scale1, g1, shift2, scale2, g2 = m.unbind(dim=2)
        h = modulate(self.norm1(x), shift1, scale1)
        attn, kv = self.attn(h, rotation, attn_mask=attn_mask, context=kv_context)
        x = x + gate(attn, g1)
        if cross:
            xc = x[:, cross_start:]
            x = torch.cat([x[:, :cross_start], xc + self.cross(self.norm2(xc), cross)], dim=1)
        x = x + gate(self.ffn(modulate(self.norm3(x), shift2, scale2)), g2)
        return x, kv
