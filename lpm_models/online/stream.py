"""Streaming conditions: per chunk, both audio channels through the streaming audio encoder.

Each chunk brings ``chunk_latents * tc`` video frames of 16 kHz audio per channel (the
character's own speech, the interlocutor's speech). Both channels run through the causal
``AudioEncoder`` in one batched call whose ``AudioStreamState`` (2 s of attention history)
is carried in ``ConditionStream``; the resulting per-frame tokens are kept for as far back as
the DiT's audio windows reach (the listen window, 1 s), so a chunk's conditions cover its
windows while the stored history stays constant in size.

Text prompts change only at chunk boundaries: ``push_prompt`` stages the new embedding and
the next ``next_conditions`` call (the next chunk) adopts it; a chunk in flight keeps the
prompt it started with.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from lpm_models.base.conditioning import LPMConditions, latent_frame_spans
from lpm_models.encoders.audio import AudioEncoder, AudioStreamState
from lpm_models.online.causal import audio_limit
from lpm_models.online.model import OnlineLPM


@dataclass(frozen=True)
class ConditionStream:
    """Condition carry-over of one stream.

    audio: encoder state of the stacked channels (2B streams: self then other);
    tokens_self / tokens_other: (B, L, audio_dim) recent audio tokens, token 0 at global
    video frame ``tokens_start``; text / text_mask: the active prompt (B, L_t, text_dim) /
    (B, L_t); pending: a prompt staged for the next chunk; chunk_index: next chunk.
    """

    audio: AudioStreamState
    tokens_self: Tensor
    tokens_other: Tensor
    tokens_start: int
    text: Tensor
    text_mask: Tensor
    pending: tuple[Tensor, Tensor] | None
    chunk_index: int

    @property
    def num_audio_tokens(self) -> int:
        return self.tokens_self.shape[1]


def null_text(batch: int, text_dim: int, device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """An absent prompt: one zero token, masked out (the text source contributes nothing)."""
    return torch.zeros(batch, 1, text_dim, device=device), torch.zeros(batch, 1, dtype=torch.bool, device=device)


def init_conditions(model: OnlineLPM, batch: int, text: Tensor | None = None, text_mask: Tensor | None = None,
                    device: torch.device | str | None = None) -> ConditionStream:
    """A fresh stream (silence before the first sample) with an optional prompt (B, L, text_dim)."""
    enc: AudioEncoder = model.audio_encoder
    dtype = next(enc.parameters()).dtype
    if text is None:
        text, text_mask = null_text(batch, model.cfg.dit.text_dim, device)
    elif text_mask is None:
        text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
    empty = torch.zeros(batch, 0, model.cfg.audio.dim, device=device, dtype=dtype)
    return ConditionStream(
        audio=enc.init_state(2 * batch, device, dtype), tokens_self=empty, tokens_other=empty, tokens_start=0,
        text=text, text_mask=text_mask, pending=None, chunk_index=0,
    )


def push_prompt(stream: ConditionStream, text: Tensor | None, text_mask: Tensor | None = None) -> ConditionStream:
    """Stage a prompt (B, L, text_dim) — or None to clear it — for the next chunk boundary."""
    b = stream.text.shape[0]
    if text is None:
        text, text_mask = null_text(b, stream.text.shape[2], stream.text.device)
    elif text_mask is None:
        text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
    return replace(stream, pending=(text, text_mask))


def _max_past(model: OnlineLPM) -> int:
    dit = model.cfg.dit
    return max(dit.speak_window[0], dit.listen_window[0])


def next_conditions(
    model: OnlineLPM, stream: ConditionStream, audio_self: Tensor, audio_other: Tensor,
) -> tuple[LPMConditions, ConditionStream]:
    """Encode one chunk of audio and return (conditions of chunk ``stream.chunk_index``, next stream).

    audio_self / audio_other: (B, chunk_latents * tc * samples_per_frame) float32 in [-1, 1].
    """
    cfg, c = model.cfg, model.online.chunk_latents
    tc = cfg.dit.temporal_factor
    expected = c * tc * cfg.audio.samples_per_frame
    if audio_self.shape != audio_other.shape or audio_self.ndim != 2 or audio_self.shape[1] != expected:
        raise ValueError(f"each chunk needs (B, {expected}) samples per channel ({c * tc} frames at "
                         f"{cfg.audio.sample_rate} Hz), got {tuple(audio_self.shape)} and {tuple(audio_other.shape)}")
    b = audio_self.shape[0]
    tokens, audio_state = model.audio_encoder(torch.cat([audio_self, audio_other], dim=0), stream.audio)
    new_self, new_other = tokens[:b], tokens[b:]  # (B, c tc, D) each
    j = stream.chunk_index
    first = int(latent_frame_spans(1, tc, j * c)[0, 0])  # first video frame of the chunk
    keep_from = max(first - _max_past(model), 0)
    drop = max(keep_from - stream.tokens_start, 0)
    tok_self = torch.cat([stream.tokens_self[:, drop:], new_self], dim=1)
    tok_other = torch.cat([stream.tokens_other[:, drop:], new_other], dim=1)
    start = stream.tokens_start + drop
    if start + tok_self.shape[1] - 1 != audio_limit(j, c, tc):
        raise RuntimeError("audio token bookkeeping is out of step with the chunk index")
    text, text_mask = stream.pending if stream.pending is not None else (stream.text, stream.text_mask)
    cond = LPMConditions(text=text, text_mask=text_mask, audio_self=tok_self, audio_other=tok_other, audio_start=start)
    nxt = ConditionStream(audio=audio_state, tokens_self=tok_self, tokens_other=tok_other, tokens_start=start,
                          text=text, text_mask=text_mask, pending=None, chunk_index=j + 1)
    return cond, nxt
