"""Causal DiT of the Online LPM: chunk-wise causal attention over a sink + window KV cache.

``CausalDiT`` subclasses the Base LPM's ``LPMDiT``: same blocks, same parameter names, so
``CausalDiT.load_state_dict(base.dit.state_dict())`` initialises the student from the
teacher. Attention is bidirectional inside a chunk and causal across chunks; references
attend only to references (so their keys are computed once per session).

Two entry points compute the same function:

- ``forward(chunk, t, cond, cache) -> (velocity, new_cache)``: one chunk against an
  explicit ``KVCache`` (streaming; the caller owns the state);
- ``forward_sequence(groups, times, cond)``: a whole clip in one pass under the
  chunk-causal mask (training). Several copies ("groups") of the clip can share one
  history group, so e.g. queries at any noise level attend to the noisy history the
  streaming generator would have cached.

Audio visible to chunk j ends at the last frame delivered with it,
``(j + 1) * chunk * tc - 1`` (each streaming step brings ``chunk * tc`` frames of audio;
the first chunk has ``tc - 1`` frames fewer video, so later chunks see ``tc - 1`` frames
of look-ahead); the Base LPM's audio windows are clipped there.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from lpm_models.base.conditioning import LPMConditions, audio_window_mask, latent_frame_spans
from lpm_models.base.dit import LISTEN, SPEAK, TEXT, LPMDiT
from lpm_models.configs import DiTConfig
from lpm_models.nn.attention import CrossSource, KVContext
from lpm_models.nn.blocks import DiTBlock
from lpm_models.nn.rope import Rotation, grid_positions
from lpm_models.online.cache import ChunkKV, KVCache
from lpm_models.online.config import OnlineConfig


def audio_limit(chunk_index: int, chunk_latents: int, temporal_factor: int) -> int:
    """Last global video frame whose audio has arrived when chunk ``chunk_index`` is generated."""
    return (chunk_index + 1) * chunk_latents * temporal_factor - 1


def chunk_causal_mask(
    refs: int, groups: int, chunks: int, chunk_latents: int, sink: int, window: int, history_group: int = 0,
    device: torch.device | str | None = None,
) -> Tensor:
    """Frame-level visibility of ``[refs | group_0 | ... | group_{G-1}]`` (each ``chunks * chunk_latents`` frames).

    References see references; a frame of chunk j in group g sees the references, its own
    chunk of its own group, and chunks i < j of ``history_group`` that the cache would hold
    (sinks i < sink, window i >= j - window). Returns (F, F) bool, True = may attend.
    """
    n = chunks * chunk_latents
    total = refs + groups * n
    idx = torch.arange(total, device=device)
    is_ref = idx < refs
    video = (idx - refs).clamp_min(0)
    group = torch.where(is_ref, -1, video // n)
    chunk = torch.where(is_ref, -1, (video % n) // chunk_latents)
    q_g, k_g = group[:, None], group[None, :]
    q_c, k_c = chunk[:, None], chunk[None, :]
    own = (q_g == k_g) & (q_c == k_c) & ~is_ref[:, None]
    kept = (k_c < sink) | (k_c >= q_c - window)
    past = (k_g == history_group) & (k_c < q_c) & kept & ~is_ref[:, None] & ~is_ref[None, :]
    refs_visible = is_ref[None, :].expand(total, total)
    return refs_visible | own | past


class CausalDiT(LPMDiT):
    """Chunk-causal LPM DiT with an explicit sink + sliding-window KV cache."""

    def __init__(self, cfg: DiTConfig, online: OnlineConfig) -> None:
        super().__init__(cfg)
        self.online = online

    # ----------------------------------------------------------- conditioning
    def chunk_sources(self, cond: LPMConditions, spans: Tensor, limits: Tensor, p: int) -> dict[str, CrossSource]:
        """Text / speak / listen sources for video frames with global spans (T, 2) and audio limits (T,)."""
        text_mask = None if cond.text_mask is None else cond.text_mask[:, None, None, :]  # (B, 1, 1, L)
        n_audio = cond.audio_self.shape[1]
        frames = torch.arange(n_audio, device=spans.device) + cond.audio_start
        arrived = (frames[None, :] <= limits[:, None]).repeat_interleave(p, dim=0)  # (T * P, F)
        speak = audio_window_mask(spans, n_audio, cond.audio_start, self.cfg.speak_window, p) & arrived
        listen = audio_window_mask(spans, n_audio, cond.audio_start, self.cfg.listen_window, p) & arrived
        return {
            TEXT: CrossSource(self.text_proj(cond.text), text_mask),
            SPEAK: CrossSource(self.audio_proj(cond.audio_self), speak),
            LISTEN: CrossSource(self.audio_proj(cond.audio_other), listen),
        }

    def _block(self, block: DiTBlock, x: Tensor, mod: Tensor, rot: Rotation, srcs: dict[str, CrossSource],
               cross_start: int, mask: Tensor | None, ctx: KVContext | None) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        sources = {name: srcs[name] for name in block.cross_sources if name in srcs}
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, x, mod, rot, sources, cross_start, mask, ctx, use_reentrant=False)
        return block(x, mod, rot, sources, cross_start=cross_start, attn_mask=mask, kv_context=ctx)

    # ------------------------------------------------------------- references
    def encode_references(
        self, refs: Tensor | None, ref_mask: Tensor | None = None, *, batch: int | None = None,
        latent_hw: tuple[int, int] | None = None,
    ) -> KVCache:
        """A fresh cache holding the reference keys/values.

        refs: (B, R, C, h, w) clean reference latents or None (then pass batch and
        latent_hw); ref_mask: (B, R) bool, False = padded / absent reference.
        """
        p = self.cfg.patch_size
        if refs is None:
            if batch is None or latent_hw is None:
                raise ValueError("without references pass batch= and latent_hw= to size the cache")
            b, r, (h, w) = batch, 0, latent_hw
            dev, dtype = self.patch_embed.weight.device, self.patch_embed.weight.dtype
        else:
            b, r, _, h, w = refs.shape
            dev, dtype = refs.device, self.patch_embed.weight.dtype
        hp, wp = h // p, w // p
        positions = self.positions(r, 0, hp, wp, dev)  # (R * P, 3)
        hd = self.cfg.head_dim
        empty = torch.zeros(len(self.blocks), b, 0, self.cfg.heads, hd, device=dev, dtype=dtype)
        valid = None
        if r and ref_mask is not None and not bool(ref_mask.all()):
            valid = ref_mask.to(dev).repeat_interleave(hp * wp, dim=1)  # (B, R * P)
        kv = ChunkKV(empty, empty, -1)
        if r:
            x = self.patch_embed(self.patchify(refs.to(dtype)))  # (B, R * P, D)
            mod = self.time_mod(self.time_embed(torch.zeros(b, r, device=dev)))  # (B, R, 6, D)
            rot = self.rope.rotation(positions)
            mask = None if valid is None else valid[:, None, None, :]
            ks, vs = [], []
            for block in self.blocks:
                x, (k, v) = self._block(block, x, mod, rot, {}, 0, mask, None)
                ks.append(k)
                vs.append(v)
            kv = ChunkKV(torch.stack(ks), torch.stack(vs), -1)
        o = self.online
        return KVCache(refs=kv, ref_positions=positions, ref_valid=valid, sink=(), window=(), next_index=0,
                       sink_chunks=o.sink_chunks, window_chunks=o.window_chunks, chunk_latents=o.chunk_latents,
                       grid=(hp, wp), ref_tokens=self.reference_embedding(refs, ref_mask))

    # ---------------------------------------------------------------- stream
    def forward(self, x: Tensor, t: Tensor, cond: LPMConditions, cache: KVCache) -> tuple[Tensor, KVCache]:  # type: ignore[override]
        """Velocity of chunk ``cache.next_index`` and the cache with this call's keys appended.

        x: (B, chunk_latents, C, h, w) latents at time t (B,) or (B, chunk_latents);
        cond: text and audio tokens covering this chunk's windows (``refs`` is ignored:
        references live in the cache). Returns (velocity like x, new cache); ``cache``
        itself is not modified.
        """
        b, frames, _, h, w = x.shape
        c, p = self.online.chunk_latents, self.cfg.patch_size
        grid = (h // p, w // p)
        if frames != c or grid != cache.grid or b != cache.batch_size:
            raise ValueError(f"chunk {tuple(x.shape)} does not match the cache: {c} latents of grid {cache.grid}, batch {cache.batch_size}")
        j = cache.next_index
        hid = self.add_reference(self.patch_embed(self.patchify(x)), cache.ref_tokens)  # (B, c * P, D)
        t_frames = t[:, None].expand(b, frames) if t.ndim == 1 else t
        emb = self.time_embed(t_frames)  # (B, c, D)
        mod = self.time_mod(emb)  # (B, c, 6, D)
        rot = self.rope.rotation(cache.slot_positions(cache.current_slot, x.device))
        ctx_rot = self.rope.rotation(cache.context_positions()) if cache.num_tokens else None
        tc = self.cfg.temporal_factor
        spans = latent_frame_spans(c, tc, j * c, device=x.device)
        limits = torch.full((c,), audio_limit(j, c, tc), device=x.device)
        srcs = self.chunk_sources(cond, spans, limits, grid[0] * grid[1])
        mask = cache.key_mask(hid.shape[1])
        ks, vs = [], []
        for i, block in enumerate(self.blocks):
            ctx = None if ctx_rot is None else KVContext(*cache.layer_kv(i), ctx_rot)
            hid, (k, v) = self._block(block, hid, mod, rot, srcs, 0, mask, ctx)
            ks.append(k)
            vs.append(v)
        out = self.final(hid, emb)  # (B, c * P, C p^2)
        return self.unpatchify(out, frames, h, w), cache.append(torch.stack(ks), torch.stack(vs))

    # --------------------------------------------------------------- parallel
    def forward_sequence(
        self, groups: Sequence[Tensor], times: Sequence[Tensor], cond: LPMConditions, history_group: int = 0,
    ) -> list[Tensor]:
        """Velocities of whole clips under the chunk-causal mask (one pass).

        groups: G tensors (B, T, C, h, w), T = chunks * chunk_latents, all covering the
        same latents 0..T-1 (e.g. a noisy-history copy and query copies); times: G tensors
        (B, T) per-frame t; cond: references (B, R, C, h, w) in ``cond.refs`` and audio from
        global frame ``cond.audio_start``. Chunks of group g attend to past chunks of
        ``history_group``. Exact w.r.t. streaming while no chunk is evicted, so
        ``chunks <= sink + window + 1`` is required. Returns G velocities like the groups.
        """
        o, p = self.online, self.cfg.patch_size
        b, n, _, h, w = groups[0].shape
        if n % o.chunk_latents or len(times) != len(groups) or not 0 <= history_group < len(groups):
            raise ValueError(f"need G groups of chunks * {o.chunk_latents} latents with G time tensors")
        chunks = n // o.chunk_latents
        if chunks > o.context_chunks + 1:
            raise ValueError(f"{chunks} chunks would evict from a sink {o.sink_chunks} + window {o.window_chunks} "
                             "cache; train longer clips with streaming rollouts")
        hp, wp = h // p, w // p
        r = 0 if cond.refs is None else cond.refs.shape[1]
        dev = groups[0].device
        hid = self.embed(groups, cond.refs, cond.ref_mask)  # (B, N, D)
        t_all = torch.cat([groups[0].new_zeros(b, r)] + [t.expand(b, n) for t in times], dim=1)  # (B, R + G T)
        emb = self.time_embed(t_all)
        mod = self.time_mod(emb)
        video_pos = grid_positions(n, hp, wp, device=dev)
        rot = self.rope.rotation(torch.cat([self.positions(r, 0, hp, wp, dev)] + [video_pos] * len(groups)))
        frame_mask = chunk_causal_mask(r, len(groups), chunks, o.chunk_latents, o.sink_chunks, o.window_chunks,
                                       history_group, device=dev)
        mask = frame_mask.repeat_interleave(hp * wp, 0).repeat_interleave(hp * wp, 1)[None, None]  # (1, 1, N, N)
        if r and cond.ref_mask is not None and not bool(cond.ref_mask.all()):
            keys = torch.ones(b, mask.shape[-1], dtype=torch.bool, device=dev)
            keys[:, : r * hp * wp] = cond.ref_mask.to(dev).repeat_interleave(hp * wp, dim=1)
            mask = mask & keys[:, None, None, :]
        tc = self.cfg.temporal_factor
        spans = latent_frame_spans(n, tc, 0, device=dev)
        chunk_of = torch.arange(n, device=dev) // o.chunk_latents
        limits = (chunk_of + 1) * o.chunk_latents * tc - 1
        srcs = self.chunk_sources(cond, spans.repeat(len(groups), 1), limits.repeat(len(groups)), hp * wp)
        for block in self.blocks:
            hid, _ = self._block(block, hid, mod, rot, srcs, r * hp * wp, mask, None)
        out = self.final(hid[:, r * hp * wp :], emb[:, r:])  # (B, G T P, C p^2)
        return [self.unpatchify(part, n, h, w) for part in out.chunk(len(groups), dim=1)]
