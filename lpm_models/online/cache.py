"""Constant-memory KV cache of the causal DiT: references + sink chunks + sliding window.

Keys are stored *before* RoPE, one ``ChunkKV`` per chunk holding every layer's keys and
values, so a chunk can be re-read at any position. The cache is immutable: ``append``
returns a new cache sharing the kept tensors (an engine can keep or drop either version,
and a generator can run several evaluations against the same cache before committing one).

Position scheme (time axis of the 3D RoPE; h/w axes are the token grid):

- reference image k sits at ``(k + 1) * ref_rope_offset`` (as in the Base LPM);
- the chunk being generated has slot ``s = min(j, sink + window)`` for absolute chunk
  index j; its latents sit at times ``s * chunk .. s * chunk + chunk - 1``;
- sink chunk i keeps slot i for ever; a window chunk with absolute index i sits at slot
  ``s - (j - i)`` (re-indexed relative to the current chunk).

While no chunk has been evicted (``j <= sink + window``) every slot equals the absolute
chunk index, so streaming reproduces a full-sequence pass exactly; afterwards the window
keeps its true relative distances to the current chunk, the sinks appear just before the
window, and RoPE times stay below ``(sink + window + 1) * chunk`` however long the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lpm_models.nn.rope import grid_positions


@dataclass(frozen=True)
class ChunkKV:
    """Keys/values of one chunk (or of the references) for every layer, before RoPE.

    k, v: (depth, B, N, heads, head_dim); index: absolute chunk index (-1 for references).
    """

    k: Tensor
    v: Tensor
    index: int

    @property
    def tokens(self) -> int:
        return self.k.shape[2]

    def detach(self) -> ChunkKV:
        return ChunkKV(self.k.detach(), self.v.detach(), self.index)


@dataclass(frozen=True)
class KVCache:
    """The attention memory of one stream (batch) for one causal DiT.

    refs: reference-token keys/values; ref_positions: (R * P, 3) their RoPE positions;
    ref_valid: (B, R * P) bool key mask for padded/absent references (None: all valid);
    sink / window: kept chunks (oldest first); next_index: absolute index of the chunk the
    next call generates; grid: (h, w) token grid of one latent frame; ref_tokens: (B, P, D)
    appearance-reference tokens added to every generated frame (``DiTConfig.ref_concat``) or None.
    """

    refs: ChunkKV
    ref_positions: Tensor
    ref_valid: Tensor | None
    sink: tuple[ChunkKV, ...]
    window: tuple[ChunkKV, ...]
    next_index: int
    sink_chunks: int
    window_chunks: int
    chunk_latents: int
    grid: tuple[int, int]
    ref_tokens: Tensor | None = None

    # ------------------------------------------------------------------ layout
    @property
    def depth(self) -> int:
        return self.refs.k.shape[0]

    @property
    def batch_size(self) -> int:
        return self.refs.k.shape[1]

    @property
    def tokens_per_chunk(self) -> int:
        return self.chunk_latents * self.grid[0] * self.grid[1]

    @property
    def chunks(self) -> tuple[ChunkKV, ...]:
        return self.sink + self.window

    @property
    def current_slot(self) -> int:
        """Position slot of chunk ``next_index`` (bounded by sink + window)."""
        return min(self.next_index, self.sink_chunks + self.window_chunks)

    def chunk_slot(self, index: int) -> int:
        """Slot at which a kept chunk is read while generating chunk ``next_index``."""
        if index < self.sink_chunks:
            return index
        return self.current_slot - (self.next_index - index)

    def slot_positions(self, slot: int, device: torch.device | str | None = None) -> Tensor:
        """(chunk * h * w, 3) RoPE positions of a chunk placed at ``slot``."""
        c = self.chunk_latents
        return grid_positions(c, *self.grid, offset=(slot * c, 0, 0), device=device)

    def context_positions(self) -> Tensor:
        """(L, 3) positions of every cached key, in ``layer_kv`` order."""
        dev = self.ref_positions.device
        parts = [self.ref_positions] + [self.slot_positions(self.chunk_slot(ch.index), dev) for ch in self.chunks]
        return torch.cat(parts, dim=0)

    def layer_kv(self, layer: int) -> tuple[Tensor, Tensor]:
        """Cached keys/values of one layer: each (B, L, heads, head_dim), [refs | sink | window]."""
        parts = (self.refs,) + self.chunks
        if len(parts) == 1:
            return self.refs.k[layer], self.refs.v[layer]
        k = torch.cat([p.k[layer] for p in parts], dim=1)
        v = torch.cat([p.v[layer] for p in parts], dim=1)
        return k, v

    def key_mask(self, new_tokens: int) -> Tensor | None:
        """(B, 1, 1, L + new_tokens) bool mask over [cache | current chunk] keys, None if all valid."""
        if self.ref_valid is None:
            return None
        b = self.ref_valid.shape[0]
        rest = torch.ones(b, self.num_tokens - self.refs.tokens + new_tokens, dtype=torch.bool, device=self.ref_valid.device)
        return torch.cat([self.ref_valid, rest], dim=1)[:, None, None, :]

    # ------------------------------------------------------------------ update
    def append(self, k: Tensor, v: Tensor) -> KVCache:
        """Commit chunk ``next_index`` (k, v: (depth, B, chunk tokens, heads, head_dim)).

        The first ``sink_chunks`` chunks become sinks; later chunks enter the window and
        push out its oldest chunk once ``window_chunks`` are kept.
        """
        if k.shape[2] != self.tokens_per_chunk or k.shape[:2] != self.refs.k.shape[:2]:
            raise ValueError(
                f"chunk keys {tuple(k.shape)} do not fit this cache (depth {self.depth}, batch {self.batch_size}, "
                f"{self.tokens_per_chunk} tokens per chunk)"
            )
        chunk = ChunkKV(k, v, self.next_index)
        sink, window = self.sink, self.window
        if self.next_index < self.sink_chunks:
            sink = sink + (chunk,)
        elif self.window_chunks > 0:
            window = (window + (chunk,))[-self.window_chunks :]
        return replace(self, sink=sink, window=window, next_index=self.next_index + 1)

    def detach(self) -> KVCache:
        """The same cache cut from the autograd graph (self-forcing trains through one chunk at a time)."""
        return replace(self, refs=self.refs.detach(), sink=tuple(c.detach() for c in self.sink),
                       window=tuple(c.detach() for c in self.window),
                       ref_tokens=None if self.ref_tokens is None else self.ref_tokens.detach())

    # ------------------------------------------------------------------ accounting
    @property
    def num_tokens(self) -> int:
        """Cached key positions (per layer)."""
        return self.refs.tokens + sum(c.tokens for c in self.chunks)

    def tensors(self) -> list[Tensor]:
        out = [self.refs.k, self.refs.v, self.ref_positions]
        if self.ref_valid is not None:
            out.append(self.ref_valid)
        if self.ref_tokens is not None:
            out.append(self.ref_tokens)
        for c in self.chunks:
            out += [c.k, c.v]
        return out

    @property
    def num_tensors(self) -> int:
        return len(self.tensors())

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors())
