"""FLOPs per second of video, measured with ``FlopCounterMode`` on the meta device.

Nothing is allocated: the model is built on the meta device and run on meta inputs of
the real shapes, so the count includes every matmul, attention (with its real sequence
lengths, references and windows) and convolution. Element-wise ops are not counted.

Figures (FLOPs, one sample):
- ``dit_forward_train_clip``: one DiT forward over a training clip (+ references);
- ``train_per_video_second``: (audio encoder + DiT) forward + backward (x3) per second
  of training video; VAE encoding is done once offline and reported separately;
- ``inference_per_generated_second``: sampler steps x 3 guidance passes over a chunk,
  divided by the new seconds each chunk adds, plus audio encoding and VAE decoding.
"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from lpm_models.base.conditioning import LPMConditions
from lpm_models.configs import LPMConfig

TRAIN_BACKWARD_FACTOR = 3.0  # forward + backward ~ 3 forwards
GUIDANCE_PASSES = 3  # full, text-only, unconditional


def _count(fn: object, *args: object) -> float:
    with FlopCounterMode(display=False) as counter:
        fn(*args)  # type: ignore[operator]
    return float(counter.get_total_flops())


def _dit_forward_flops(model: torch.nn.Module, cfg: LPMConfig, latents: int, refs: int, text_tokens: int) -> float:
    meta = torch.device("meta")
    h, w = cfg.latent_size
    c = cfg.vae.latent_channels
    frames = cfg.video_frames(latents)
    cond = LPMConditions(
        text=torch.empty(1, text_tokens, cfg.text.dim, device=meta),
        audio_self=torch.empty(1, frames, cfg.audio.dim, device=meta),
        audio_other=torch.empty(1, frames, cfg.audio.dim, device=meta),
        refs=torch.empty(1, refs, c, h, w, device=meta) if refs else None,
    )
    x = torch.empty(1, latents, c, h, w, device=meta)
    t = torch.empty(1, latents, device=meta)
    return _count(model.dit, x, t, cond)


def estimate_flops(cfg: LPMConfig, refs: int = 1, text_tokens: int = 32) -> dict[str, float]:
    """FLOP figures of a preset (see module docstring)."""
    from lpm_models.base.model import BaseLPM
    from lpm_models.vae.model import VideoVAE

    meta = torch.device("meta")
    with meta:
        model = BaseLPM(cfg)
        vae = VideoVAE(cfg.vae)
    fps = cfg.fps
    with torch.no_grad():
        train_latents = cfg.latent_frames(cfg.clip_frames)
        dit_train = _dit_forward_flops(model, cfg, train_latents, refs, text_tokens)
        audio_second = _count(model.audio_encoder, torch.empty(1, cfg.audio.sample_rate, device=meta))
        chunk = cfg.sampler.chunk_latents
        dit_chunk = _dit_forward_flops(model, cfg, chunk, refs, text_tokens)
        video = torch.empty(1, cfg.clip_frames, 3, cfg.height, cfg.width, device=meta)
        vae_encode = _count(vae.encode, video)
        vae_decode = _count(vae.decode, torch.empty(1, train_latents, cfg.vae.latent_channels, *cfg.latent_size, device=meta))
    clip_seconds = cfg.clip_frames / fps
    new_seconds = (chunk - cfg.sampler.overlap_latents) * cfg.vae.temporal_factor / fps
    sampling = cfg.sampler.steps * GUIDANCE_PASSES * dit_chunk / new_seconds
    per_second_decode = vae_decode / clip_seconds
    return {
        "dit_forward_train_clip": dit_train,
        "train_per_video_second": TRAIN_BACKWARD_FACTOR * (dit_train / clip_seconds + 2 * audio_second),
        "vae_encode_per_video_second": vae_encode / clip_seconds,
        "dit_forward_chunk": dit_chunk,
        "sampling_per_generated_second": sampling,
        "vae_decode_per_generated_second": per_second_decode,
        "inference_per_generated_second": sampling + per_second_decode + 2 * audio_second,
    }
