"""Base LPM diffusion transformer (bidirectional, flow-matching velocity prediction).

Sequence per sample: ``[ref_0 | ... | ref_{R-1} | video frames]``, every frame patchified
to P tokens. Reference latents are clean (timestep 0), share the patch embedding and are
told apart only by segment-wise 3D RoPE offsets: reference k sits at
``(k + 1) * ref_rope_offset`` (no new parameters). Even blocks cross-attend to
[text + SPEAK audio in a local window], odd blocks to [text + LISTEN audio in a wide
window]; each block has its own K/V per source and sums the source outputs.
Timesteps are per frame, so clean continuation context frames ride along with t = 0.
With ``cfg.ref_concat`` the appearance reference (slot 0) is also patch-embedded by its own
linear and added to every video frame's tokens at the same grid position (channel
conditioning, as image-to-video models do); it follows the reference's dropout and mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from lpm_models.base.conditioning import ConditionKeep, LPMConditions, audio_window_mask, latent_frame_spans
from lpm_models.configs import DiTConfig
from lpm_models.nn.adaln import ModulationProjection, TimestepEmbedder, modulate
from lpm_models.nn.attention import CrossSource
from lpm_models.nn.blocks import MODULATION_CHUNKS, DiTBlock
from lpm_models.nn.rope import RotaryEmbedding, segment_positions, split_head_dim_3d

SPEAK, LISTEN, TEXT = "speak", "listen", "text"


def block_sources(index: int) -> tuple[str, ...]:
    """Cross-attention sources of block ``index``: text + speak (even) or listen (odd) audio."""
    return (TEXT, SPEAK) if index % 2 == 0 else (TEXT, LISTEN)


class FinalLayer(nn.Module):
    """AdaLN (shift, scale) + zero-initialised linear to patch pixels.

    forward x: (B, T * P, D), c: (B, T, D) -> (B, T * P, patch * patch * C).
    """

    def __init__(self, dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.modulation = nn.Parameter(torch.randn(2, dim) / dim**0.5)
        self.linear = nn.Linear(dim, out_dim)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        shift, scale = (self.modulation[None, None] + c[:, :, None, :]).unbind(dim=2)  # (B, T, D) each
        return self.linear(modulate(self.norm(x), shift, scale))


class LPMDiT(nn.Module):
    """Diffusion transformer over [references | video] latent tokens."""

    def __init__(self, cfg: DiTConfig) -> None:
        super().__init__()
        self.cfg = cfg
        p, c, d = cfg.patch_size, cfg.in_channels, cfg.dim
        self.patch_embed = nn.Linear(c * p * p, d)
        self.ref_embed = nn.Linear(c * p * p, d) if cfg.ref_concat else None
        self.time_embed = TimestepEmbedder(d)
        self.time_mod = ModulationProjection(d, MODULATION_CHUNKS)
        self.text_proj = nn.Sequential(nn.LayerNorm(cfg.text_dim), nn.Linear(cfg.text_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.audio_proj = nn.Sequential(nn.LayerNorm(cfg.audio_dim), nn.Linear(cfg.audio_dim, d), nn.GELU(approximate="tanh"), nn.Linear(d, d))
        self.blocks = nn.ModuleList(
            DiTBlock(d, cfg.heads, cfg.ffn_dim, block_sources(i), qk_norm=cfg.qk_norm, eps=cfg.eps) for i in range(cfg.depth)
        )
        self.final = FinalLayer(d, c * p * p, cfg.eps)
        self.rope = RotaryEmbedding(split_head_dim_3d(cfg.head_dim), cfg.rope_theta)
        self.gradient_checkpointing = False
        self._init_weights()

    def _init_weights(self) -> None:
        for name, module in self.named_modules():
            if isinstance(module, nn.Linear) and not name.startswith(("final.", "time_mod.")):
                nn.init.xavier_uniform_(module.weight)
                nn.init.zeros_(module.bias)
        for layer in (self.time_embed.mlp[0], self.time_embed.mlp[2]):
            nn.init.normal_(layer.weight, std=0.02)

    # ----------------------------------------------------------------- tokens
    def patchify(self, x: Tensor) -> Tensor:
        """(B, T, C, h, w) -> (B, T * (h / p) * (w / p), C * p * p)."""
        b, t, c, h, w = x.shape
        p = self.cfg.patch_size
        if h % p or w % p:
            raise ValueError(f"latent size {h}x{w} is not divisible by patch size {p}")
        x = x.reshape(b, t, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        return x.reshape(b, t * (h // p) * (w // p), c * p * p)

    def unpatchify(self, x: Tensor, frames: int, h: int, w: int) -> Tensor:
        """(B, T * P, C * p * p) -> (B, T, C, h, w)."""
        b = x.shape[0]
        p, c = self.cfg.patch_size, self.cfg.in_channels
        x = x.reshape(b, frames, h // p, w // p, c, p, p).permute(0, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, frames, c, h, w)

    def positions(self, refs: int, frames: int, hp: int, wp: int, device: torch.device) -> Tensor:
        """(t, h, w) RoPE positions of [refs | video]: ((refs + frames) * hp * wp, 3)."""
        off = self.cfg.ref_rope_offset
        segs = [(1, hp, wp)] * refs + [(frames, hp, wp)]
        offsets = [tuple((k + 1) * o for o in off) for k in range(refs)] + [(0, 0, 0)]
        return segment_positions(segs, offsets, device=device)

    # ------------------------------------------------------------- conditions
    def reference_embedding(self, refs: Tensor | None, ref_mask: Tensor | None = None,
                            keep_refs: Tensor | None = None) -> Tensor | None:
        """(B, P, D) channel-conditioning tokens of the appearance reference, or None.

        refs: (B, R, C, h, w); ref_mask: (B, R) and keep_refs: (B,) bool gates (a masked or
        dropped appearance reference contributes exactly zero). None when ``cfg.ref_concat``
        is off or there are no references.
        """
        if self.ref_embed is None or refs is None or refs.shape[1] == 0:
            return None
        emb = self.ref_embed(self.patchify(refs[:, :1].to(self.ref_embed.weight.dtype)))  # (B, P, D)
        gate = torch.ones(refs.shape[0], dtype=torch.bool, device=refs.device)
        if ref_mask is not None:
            gate = gate & ref_mask[:, 0].to(refs.device)
        if keep_refs is not None:
            gate = gate & keep_refs.to(refs.device)
        return emb * gate[:, None, None].to(emb.dtype)

    @staticmethod
    def add_reference(video: Tensor, ref_emb: Tensor | None) -> Tensor:
        """Video tokens (B, T * P, D) plus the reference tokens (B, P, D) at every frame."""
        if ref_emb is None:
            return video
        b, n, d = video.shape
        p = ref_emb.shape[1]
        return (video.view(b, n // p, p, d) + ref_emb[:, None]).view(b, n, d)

    def embed(self, videos: Sequence[Tensor], refs: Tensor | None, ref_mask: Tensor | None = None,
              keep_refs: Tensor | None = None) -> Tensor:
        """Token embeddings of ``[refs | videos[0] | videos[1] | ...]``: (B, (R + sum T) * P, D).

        videos: latents (B, T, C, h, w) each; every video frame also carries the appearance
        reference's channel tokens (``reference_embedding``).
        """
        ref_emb = self.reference_embedding(refs, ref_mask, keep_refs)
        parts = [self.add_reference(self.patch_embed(self.patchify(v)), ref_emb) for v in videos]
        if refs is not None and refs.shape[1]:
            parts.insert(0, self.patch_embed(self.patchify(refs.to(videos[0].dtype))))
        return torch.cat(parts, dim=1)

    def _ref_key_mask(self, cond: LPMConditions, keep: ConditionKeep | None, refs: int, frames: int, p: int) -> Tensor | None:
        """(B, 1, 1, N) bool key mask hiding dropped / padded references, or None."""
        if refs == 0 or (keep is None and cond.ref_mask is None):
            return None
        b = cond.batch_size
        valid = torch.ones(b, refs, dtype=torch.bool, device=cond.text.device)
        if cond.ref_mask is not None:
            valid = valid & cond.ref_mask
        if keep is not None:
            valid = valid & keep.refs[:, None]
        if valid.device.type != "meta" and bool(valid.all()):
            return None
        video = torch.ones(b, frames * p, dtype=torch.bool, device=valid.device)
        return torch.cat([valid.repeat_interleave(p, dim=1), video], dim=1)[:, None, None, :]

    def cross_sources(
        self, cond: LPMConditions, keep: ConditionKeep | None, frames: int, p: int, latent_start: int
    ) -> dict[str, CrossSource]:
        """Projected text / speak / listen sources with their masks and keep gates."""
        text_mask = None if cond.text_mask is None else cond.text_mask[:, None, None, :]  # (B, 1, 1, L)
        spans = latent_frame_spans(frames, self.cfg.temporal_factor, latent_start, device=cond.audio_self.device)
        n_audio = cond.audio_self.shape[1]
        speak_mask = audio_window_mask(spans, n_audio, cond.audio_start, self.cfg.speak_window, p)  # (T*P, F)
        listen_mask = audio_window_mask(spans, n_audio, cond.audio_start, self.cfg.listen_window, p)
        return {
            TEXT: CrossSource(self.text_proj(cond.text), text_mask, None if keep is None else keep.text),
            SPEAK: CrossSource(self.audio_proj(cond.audio_self), speak_mask, None if keep is None else keep.audio_self),
            LISTEN: CrossSource(self.audio_proj(cond.audio_other), listen_mask, None if keep is None else keep.audio_other),
        }

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        x: Tensor,
        t: Tensor,
        cond: LPMConditions,
        keep: ConditionKeep | None = None,
        latent_start: int = 0,
    ) -> Tensor:
        """Predict the flow velocity (noise - clean).

        x: (B, T, C, h, w) latents at time t; t: (B,) or (B, T) per frame in [0, 1]
        (0 = clean, 1 = noise); cond: conditions (refs (B, R, C, h, w)); keep: per-sample
        condition flags (None = keep all); latent_start: global index of latent 0 (audio
        alignment). Returns (B, T, C, h, w).
        """
        b, frames, _, h, w = x.shape
        p = (h // self.cfg.patch_size) * (w // self.cfg.patch_size)
        refs = 0 if cond.refs is None else cond.refs.shape[1]
        h_tok = self.embed([x], cond.refs, cond.ref_mask, None if keep is None else keep.refs)  # (B, N, D)
        t_frames = t[:, None].expand(b, frames) if t.ndim == 1 else t
        t_all = torch.cat([t_frames.new_zeros(b, refs), t_frames], dim=1)  # (B, R + T)
        c = self.time_embed(t_all)  # (B, R + T, D)
        mod = self.time_mod(c)  # (B, R + T, 6, D)
        pos = self.positions(refs, frames, h // self.cfg.patch_size, w // self.cfg.patch_size, x.device)
        rotation = self.rope.rotation(pos)
        attn_mask = self._ref_key_mask(cond, keep, refs, frames, p)
        sources = self.cross_sources(cond, keep, frames, p, latent_start)
        for block in self.blocks:
            srcs = {name: sources[name] for name in block.cross_sources}
            if self.gradient_checkpointing and self.training:
                h_tok, _ = checkpoint(block, h_tok, mod, rotation, srcs, refs * p, attn_mask, use_reentrant=False)
            else:
                h_tok, _ = block(h_tok, mod, rotation, srcs, cross_start=refs * p, attn_mask=attn_mask)
        out = self.final(h_tok[:, refs * p :], c[:, refs:])  # (B, T * P, C p^2)
        return self.unpatchify(out, frames, h, w)
