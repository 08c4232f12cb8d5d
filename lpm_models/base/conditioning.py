"""Conditions of the Base LPM DiT, their classifier-free-guidance dropout, and audio alignment.

Time alignment: the causal VAE codes video frame 0 alone and then ``tc`` frames per
latent, so global latent ``g`` covers video frames ``[0, 0]`` for ``g = 0`` and
``[(g - 1) tc + 1, g tc]`` otherwise. Audio tokens are one per video frame; a latent's
audio attention sees the tokens of its own frames widened by a (past, future) window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lpm_models.configs import ConditionDropout


@dataclass(frozen=True)
class LPMConditions:
    """Everything the DiT is conditioned on besides the noisy latents and timesteps.

    text: (B, L, text_dim) frozen text-encoder token embeddings; text_mask: (B, L) bool.
    audio_self / audio_other: (B, F, audio_dim) audio tokens of the character's own speech
    (drives speaking) and of the interlocutor (drives listening), one per video frame;
    audio token 0 is global video frame ``audio_start``.
    refs: (B, R, C, h, w) clean reference latents (same h, w as the video); ref_mask: (B, R)
    bool marking real references (for ragged reference sets).
    """

    text: Tensor
    audio_self: Tensor
    audio_other: Tensor
    text_mask: Tensor | None = None
    refs: Tensor | None = None
    ref_mask: Tensor | None = None
    audio_start: int = 0

    @property
    def batch_size(self) -> int:
        return self.text.shape[0]

    def repeat(self, n: int) -> LPMConditions:
        """Stack n copies along the batch (for batched guidance passes)."""
        def rep(x: Tensor | None) -> Tensor | None:
            return None if x is None else x.repeat(n, *([1] * (x.ndim - 1)))

        return replace(
            self, text=rep(self.text), audio_self=rep(self.audio_self), audio_other=rep(self.audio_other),
            text_mask=rep(self.text_mask), refs=rep(self.refs), ref_mask=rep(self.ref_mask),
        )

    def slice_audio(self, first_frame: int, last_frame: int) -> LPMConditions:
        """Keep audio tokens of global video frames [first_frame, last_frame] (clipped)."""
        lo = max(first_frame - self.audio_start, 0)
        hi = min(last_frame - self.audio_start + 1, self.audio_self.shape[1])
        if hi <= lo:
            raise ValueError(f"no audio for frames {first_frame}..{last_frame} (audio starts at {self.audio_start})")
        return replace(
            self, audio_self=self.audio_self[:, lo:hi], audio_other=self.audio_other[:, lo:hi],
            audio_start=self.audio_start + lo,
        )


@dataclass(frozen=True)
class ConditionKeep:
    """Per-sample flags (B,) bool: which conditions survive (False = dropped / null)."""

    text: Tensor
    audio_self: Tensor
    audio_other: Tensor
    refs: Tensor

    @classmethod
    def constant(cls, batch: int, device: torch.device | str | None = None, *, text: bool = True,
                 audio_self: bool = True, audio_other: bool = True, refs: bool = True) -> ConditionKeep:
        def full(v: bool) -> Tensor:
            return torch.full((batch,), v, dtype=torch.bool, device=device)

        return cls(full(text), full(audio_self), full(audio_other), full(refs))

    @classmethod
    def sample(cls, batch: int, rates: ConditionDropout, generator: torch.Generator | None = None,
               device: torch.device | str | None = None) -> ConditionKeep:
        """Independent Bernoulli dropout of each condition at its configured rate."""
        draws = torch.rand(4, batch, generator=generator, device=device)  # one row per condition
        p = torch.tensor([rates.text, rates.audio_self, rates.audio_other, rates.refs], device=device)
        keep = draws >= p[:, None]
        return cls(keep[0], keep[1], keep[2], keep[3])

    @staticmethod
    def cat(keeps: list[ConditionKeep]) -> ConditionKeep:
        return ConditionKeep(*(torch.cat([getattr(k, f) for k in keeps]) for f in ("text", "audio_self", "audio_other", "refs")))


def latent_frame_spans(num_latents: int, temporal_factor: int, latent_start: int = 0,
                       device: torch.device | str | None = None) -> Tensor:
    """Global video-frame span [first, last] of each latent frame: (T, 2) int64."""
    g = torch.arange(latent_start, latent_start + num_latents, device=device)
    last = g * temporal_factor
    first = torch.where(g == 0, torch.zeros_like(g), last - temporal_factor + 1)
    return torch.stack([first, last], dim=1)


def audio_window_mask(spans: Tensor, num_audio: int, audio_start: int, window: tuple[int, int],
                      tokens_per_frame: int) -> Tensor:
    """Which audio tokens each video token may attend to.

    spans: (T, 2) global video-frame spans of the latent frames; audio token j is global
    frame ``audio_start + j``; window: (past, future) frames added around each span.
    Returns (T * tokens_per_frame, num_audio) bool (token order: frame-major).
    """
    f = torch.arange(num_audio, device=spans.device) + audio_start  # (F,)
    allowed = (f[None, :] >= spans[:, :1] - window[0]) & (f[None, :] <= spans[:, 1:] + window[1])  # (T, F)
    return allowed.repeat_interleave(tokens_per_frame, dim=0)


def audio_frames_for_latents(num_latents: int, temporal_factor: int, latent_start: int,
                             windows: list[tuple[int, int]]) -> tuple[int, int]:
    """Global video frames [first, last] of audio any window of these latents can see."""
    spans = latent_frame_spans(num_latents, temporal_factor, latent_start)
    past = max(w[0] for w in windows)
    future = max(w[1] for w in windows)
    return max(int(spans[0, 0]) - past, 0), int(spans[-1, 1]) + future
