"""Online LPM streaming engine (pure Python + torch; serving wraps it, it imports no server).

    engine = OnlineEngine(model, vae)
    session = engine.start(character_image, references, prompt="smiles warmly", seed=7)
    while talking:
        frames = engine.step(session, self_audio_chunk, other_audio_chunk)   # (F, H, W, 3) uint8
    engine.close(session)

A step consumes ``chunk_latents * tc`` video frames of 16 kHz audio per channel
(``engine.chunk_samples``) and returns the frames of one chunk: ``1 + tc (c - 1)`` for the
first chunk, ``tc * c`` afterwards, so the video runs ``tc - 1`` frames behind the audio.
All state of a stream (KV caches, audio encoder state and token history, VAE decoder
context, noise generator, runtime tracker, chunk index) lives in its ``Session``; the
engine holds only the models, so many sessions can be interleaved.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from lpm_models.memory import retain_freed_memory
from lpm_models.online import runtime
from lpm_models.online.config import OnlineConfig
from lpm_models.online.generator import StreamState, draw_noise, generate_chunk, start_stream
from lpm_models.online.model import OnlineLPM
from lpm_models.online.stream import ConditionStream, init_conditions, next_conditions, push_prompt
from lpm_models.online.vae_stream import DecoderState, StreamingDecoder
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)


class PromptEncoder(Protocol):
    """What the engine needs from a text encoder (``lpm_models.encoders.TextEncoder`` fits)."""

    def encode(self, prompts: list[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]: ...


@dataclass
class Session:
    """One stream. Mutated only by the engine that started it."""

    seed: int
    stream: StreamState
    conditions: ConditionStream
    decoder: DecoderState
    tracker: runtime.RuntimeTracker
    generator: torch.Generator
    prompt: str | None
    report: runtime.RuntimeReport | None = None
    frames_out: int = 0
    closed: bool = False

    @property
    def chunk_index(self) -> int:
        return self.stream.chunk_index

    @property
    def runtime_state(self) -> runtime.RuntimeState:
        """State of the last generated chunk (``warmup`` before the first one)."""
        return runtime.RuntimeState.WARMUP if self.report is None else self.report.state


def image_to_tensor(image: np.ndarray, size: tuple[int, int], device: torch.device | str) -> Tensor:
    """(H, W, 3) uint8 -> (1, 3, h, w) float32 in [-1, 1], resized (antialiased) to ``size``."""
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"images must be (H, W, 3) uint8 RGB, got {arr.shape} {arr.dtype}")
    x = torch.from_numpy(np.ascontiguousarray(arr)).to(device).permute(2, 0, 1)[None].float() / 127.5 - 1.0
    if tuple(x.shape[-2:]) != size:
        x = F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)
    return x


def frames_to_uint8(frames: Tensor) -> np.ndarray:
    """(F, 3, H, W) in [-1, 1] -> (F, H, W, 3) uint8."""
    x = ((frames.float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


class OnlineEngine:
    """Sessions of an Online LPM: start / step / close."""

    def __init__(self, model: OnlineLPM, vae: VideoVAE, cfg: OnlineConfig | None = None,
                 text_encoder: PromptEncoder | None = None) -> None:
        if cfg is not None:
            model.configure(cfg)
        self.model = model.eval()
        self.vae = vae.eval()
        self.decoder = StreamingDecoder(self.vae)
        self._text = text_encoder
        self.device = next(model.parameters()).device
        mc = model.cfg
        if vae.cfg.latent_channels != mc.dit.in_channels or vae.temporal_factor != mc.dit.temporal_factor:
            raise ValueError("the VAE does not match the model (latent channels / temporal factor)")
        retain_freed_memory()  # a stream re-allocates the same buffers every chunk: keep them (lpm_models.memory)

    @property
    def cfg(self) -> OnlineConfig:
        return self.model.online

    @property
    def chunk_frames(self) -> int:
        """Audio frames consumed (and video frames produced after the first chunk) per step."""
        return self.cfg.chunk_video_frames(self.model.cfg.dit.temporal_factor)

    @property
    def chunk_samples(self) -> int:
        """Samples per channel per step."""
        return self.chunk_frames * self.model.cfg.audio.samples_per_frame

    @property
    def chunk_seconds(self) -> float:
        """Media time of one step's audio."""
        return self.chunk_samples / self.model.cfg.audio.sample_rate

    def _encode_prompt(self, prompt: str | None) -> tuple[Tensor, Tensor] | None:
        if prompt is None:
            return None
        if self._text is None:
            from lpm_models.encoders.text import TextEncoder

            self._text = TextEncoder(self.model.cfg.text, device=self.device)
        return self._text.encode([prompt], device=self.device)

    @torch.inference_mode()
    def start(self, character_image: np.ndarray, references: list[np.ndarray] | None = None,
              prompt: str | None = None, seed: int = 0) -> Session:
        """Open a stream for a character (plus identity references) with an optional prompt."""
        mc = self.model.cfg
        images = [character_image] + list(references or [])
        if len(images) > mc.max_refs:
            raise ValueError(f"{len(images)} images (character + references) exceed this model's max_refs "
                             f"{mc.max_refs}; pass at most {mc.max_refs - 1} references")
        pixels = torch.cat([image_to_tensor(im, (mc.height, mc.width), self.device) for im in images])
        refs = self.vae.encode_image(pixels)[:, 0][None]  # (1, R, C, h, w)
        text = self._encode_prompt(prompt)
        conditions = init_conditions(self.model, 1, *(text or (None, None)), device=self.device)
        session = Session(
            seed=seed, stream=start_stream(self.model, refs), conditions=conditions,
            decoder=self.decoder.init_state(), tracker=runtime.RuntimeTracker(),
            generator=torch.Generator(self.device).manual_seed(seed), prompt=prompt,
        )
        log.debug("session started: %d reference images, prompt %r, seed %d", len(images), prompt, seed)
        return session

    def _audio(self, chunk: np.ndarray | Tensor, name: str) -> Tensor:
        x = torch.as_tensor(np.asarray(chunk, dtype=np.float32) if not isinstance(chunk, Tensor) else chunk.float())
        if x.shape != (self.chunk_samples,):
            raise ValueError(f"{name} must be ({self.chunk_samples},) float32 at {self.model.cfg.audio.sample_rate} Hz "
                             f"({self.chunk_frames} video frames), got {tuple(x.shape)}")
        return x.to(self.device)[None]

    @torch.inference_mode()
    def step(self, session: Session, self_audio_chunk: np.ndarray | Tensor, other_audio_chunk: np.ndarray | Tensor,
             prompt: str | None = None) -> np.ndarray:
        """Generate the next chunk; a new ``prompt`` takes effect from this chunk on.

        Returns frames (F, H, W, 3) uint8 (see the module docstring for F).
        """
        if session.closed:
            raise RuntimeError("this session is closed; start a new one")
        a_self, a_other = self._audio(self_audio_chunk, "self_audio_chunk"), self._audio(other_audio_chunk, "other_audio_chunk")
        if prompt is not None and prompt != session.prompt:
            session.conditions = push_prompt(session.conditions, *self._encode_prompt(prompt))  # type: ignore[misc]
            session.prompt = prompt
        report, session.tracker = runtime.update(
            session.tracker, a_self[0].cpu().numpy(), a_other[0].cpu().numpy(), self.cfg.vad,
            self.model.cfg.audio.samples_per_frame, self.cfg.warmup,
        )
        cond, session.conditions = next_conditions(self.model, session.conditions, a_self, a_other)
        noise = draw_noise(self.model, 1, self.model.cfg.latent_size, session.generator, self.device)
        out = generate_chunk(self.model, session.stream, cond, noise)
        session.stream = out.state
        frames, session.decoder = self.decoder.decode(out.latents, session.decoder)
        session.report = report
        session.frames_out += frames.shape[1]
        return frames_to_uint8(frames[0])

    def close(self, session: Session) -> None:
        """End a stream and release its state."""
        session.closed = True
        session.stream = None  # type: ignore[assignment]
        session.conditions = None  # type: ignore[assignment]
        session.decoder = DecoderState()
