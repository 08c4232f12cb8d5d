"""Shared builders for the Online LPM tests (no tests here): small configs and live models."""

from __future__ import annotations

import torch

from lpm_models.base.conditioning import LPMConditions
from lpm_models.base.model import BaseLPM
from lpm_models.configs import LPMConfig, get_preset
from lpm_models.online.config import OnlineConfig
from lpm_models.online.model import OnlineLPM


def small_config() -> LPMConfig:
    """The tiny preset at 32x32 pixels: 4x4 latents, 2x2 = 4 DiT tokens per latent frame."""
    return get_preset("tiny", height=32, width=32)


def online_cfg(**overrides: object) -> OnlineConfig:
    base = dict(chunk_latents=2, sink_chunks=1, window_chunks=2, backbone_times=(1.0, 0.5), refiner=True, refiner_t=0.25)
    base.update(overrides)
    return OnlineConfig(**base)  # type: ignore[arg-type]


def enliven(model: torch.nn.Module, seed: int = 0, std: float = 0.1) -> None:
    """Randomise the zero-initialised output and modulation layers so every input reaches the output."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("final.linear.weight", "time_mod.proj.weight")):
                p.copy_(torch.randn(p.shape, generator=g) * (std if "final" in name else std / 10))


def live_base(cfg: LPMConfig | None = None, seed: int = 0) -> BaseLPM:
    torch.manual_seed(seed)
    base = BaseLPM(cfg or small_config()).eval()
    enliven(base, seed)
    return base


def live_online(online: OnlineConfig | None = None, cfg: LPMConfig | None = None, seed: int = 0) -> OnlineLPM:
    return OnlineLPM.from_base(live_base(cfg, seed), online or online_cfg()).eval()


def make_conditions(cfg: LPMConfig, batch: int, frames: int, refs: int = 2, seed: int = 0,
                    ref_mask: torch.Tensor | None = None) -> LPMConditions:
    """Random conditions with ``frames`` audio tokens per channel from global frame 0."""
    g = torch.Generator().manual_seed(seed)
    h, w = cfg.latent_size
    return LPMConditions(
        text=torch.randn(batch, 5, cfg.dit.text_dim, generator=g),
        text_mask=torch.ones(batch, 5, dtype=torch.bool),
        audio_self=torch.randn(batch, frames, cfg.dit.audio_dim, generator=g),
        audio_other=torch.randn(batch, frames, cfg.dit.audio_dim, generator=g),
        refs=torch.randn(batch, refs, cfg.dit.in_channels, h, w, generator=g) if refs else None,
        ref_mask=ref_mask,
    )
