"""Causal video VAE: ``(B, T, 3, H, W)`` frames in [-1, 1] <-> ``(B, T', C, h, w)`` latents.

``T = 1 + tc * k`` frames map to ``T' = 1 + k`` latent frames (the first frame is coded
alone), ``h = H / s``, ``w = W / s``. A reference image is a one-frame clip, so
``encode_image(x)`` equals the first latent of any clip starting with ``x``.

Latents leave ``encode`` normalised per channel with the stored ``latent_mean`` /
``latent_std`` buffers (set them once from data with ``set_latent_stats``) so the DiT sees
roughly unit-variance inputs; ``decode`` undoes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from lpm_models.configs import VAEConfig
from lpm_models.vae.layers import (
    CausalConv3d,
    ChannelRMSNorm,
    Downsample,
    ResBlock3d,
    Upsample,
    depth_to_space,
    space_to_depth,
)

log = logging.getLogger(__name__)


def _kernel(temporal: bool) -> tuple[int, int, int]:
    return (3, 3, 3) if temporal else (1, 3, 3)


class Encoder(nn.Module):
    """(B, 3, T, H, W) -> (B, 2C or C, T', h, w) moments (mean, logvar) or latents."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans, p = cfg.channels, cfg.patch_size
        self.patch_size = p
        self.conv_in = CausalConv3d(cfg.in_channels * p * p, chans[0], _kernel(cfg.conv3d_levels[0]))
        layers: list[nn.Module] = []
        c_in = chans[0]
        for level, c in enumerate(chans):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock3d(c_in, c, cfg.eps, temporal=cfg.conv3d_levels[level]))
                c_in = c
            if level < len(chans) - 1:
                layers.append(Downsample(c, cfg.spatial_down[level], cfg.temporal_down[level]))
        self.down = nn.Sequential(*layers)
        self.mid = ResBlock3d(c_in, c_in, cfg.eps, temporal=True)
        self.norm_out = ChannelRMSNorm(c_in, cfg.eps)
        out = 2 * cfg.latent_channels if cfg.latent_type == "kl" else cfg.latent_channels
        self.conv_out = CausalConv3d(c_in, out)

    def forward(self, x: Tensor) -> Tensor:
        h = self.mid(self.down(self.conv_in(space_to_depth(x, self.patch_size))))
        return self.conv_out(nn.functional.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, C, T', h, w) latents -> (B, 3, T, H, W) frames."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        chans, p = cfg.channels, cfg.patch_size
        self.patch_size = p
        self.conv_in = CausalConv3d(cfg.latent_channels, chans[-1])
        self.mid = ResBlock3d(chans[-1], chans[-1], cfg.eps, temporal=True)
        layers: list[nn.Module] = []
        c_in = chans[-1]
        for level in reversed(range(len(chans))):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResBlock3d(c_in, chans[level], cfg.eps, temporal=cfg.conv3d_levels[level]))
                c_in = chans[level]
            if level > 0:
                up = Upsample(c_in, cfg.spatial_down[level - 1], cfg.temporal_down[level - 1], chans[level - 1])
                layers.append(up)
                c_in = up.out_channels
        self.up = nn.Sequential(*layers)
        self.norm_out = ChannelRMSNorm(c_in, cfg.eps)
        self.conv_out = CausalConv3d(c_in, cfg.in_channels * p * p, _kernel(cfg.conv3d_levels[0]))

    def forward(self, z: Tensor) -> Tensor:
        h = self.up(self.mid(self.conv_in(z)))
        return depth_to_space(self.conv_out(nn.functional.silu(self.norm_out(h))), self.patch_size)


@dataclass(frozen=True)
class VAEOutput:
    """recon: (B, T, 3, H, W); mean, logvar: (B, T', C, h, w) (logvar None for 'ae')."""

    recon: Tensor
    mean: Tensor
    logvar: Tensor | None


class VideoVAE(nn.Module):
    """Causal 3D-conv autoencoder with a KL or plain latent."""

    def __init__(self, cfg: VAEConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.register_buffer("latent_mean", torch.zeros(cfg.latent_channels))
        self.register_buffer("latent_std", torch.ones(cfg.latent_channels))

    @classmethod
    def from_config(cls, cfg: VAEConfig) -> VideoVAE:
        """Build, and load ``cfg.pretrained_path`` when it is set."""
        vae = cls(cfg)
        if cfg.pretrained_path:
            vae.load_pretrained(cfg.pretrained_path, prefix=cfg.pretrained_prefix)
        return vae

    @property
    def spatial_factor(self) -> int:
        return self.cfg.spatial_factor

    @property
    def temporal_factor(self) -> int:
        return self.cfg.temporal_factor

    def _check_video(self, video: Tensor) -> None:
        b, t, c, h, w = video.shape
        s, tc = self.spatial_factor, self.temporal_factor
        if c != self.cfg.in_channels or h % s or w % s or (t - 1) % tc:
            raise ValueError(
                f"video {tuple(video.shape)} must be (B, 1 + {tc}k, {self.cfg.in_channels}, H, W) with H, W divisible by {s}"
            )

    def _stats(self, like: Tensor) -> tuple[Tensor, Tensor]:
        shape = (1, 1, -1, 1, 1)
        return self.latent_mean.view(shape).to(like.dtype), self.latent_std.view(shape).to(like.dtype)

    def encode_moments(self, video: Tensor) -> tuple[Tensor, Tensor | None]:
        """video (B, T, 3, H, W) -> (mean, logvar) un-normalised, each (B, T', C, h, w)."""
        self._check_video(video)
        moments = self.encoder(video.transpose(1, 2)).transpose(1, 2)  # (B, T', 2C or C, h, w)
        if self.cfg.latent_type == "ae":
            return moments, None
        mean, logvar = moments.chunk(2, dim=2)
        return mean, logvar.clamp(-30.0, 20.0)

    def encode(self, video: Tensor, sample: bool = False, generator: torch.Generator | None = None) -> Tensor:
        """video (B, T, 3, H, W) in [-1, 1] -> normalised latents (B, T', C, h, w)."""
        mean, logvar = self.encode_moments(video)
        z = mean
        if sample and logvar is not None:
            noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        mu, std = self._stats(z)
        return (z - mu) / std

    def encode_image(self, image: Tensor) -> Tensor:
        """Reference image (B, 3, H, W) -> normalised latent (B, 1, C, h, w) (a one-frame clip)."""
        return self.encode(image[:, None])

    def decode(self, latents: Tensor) -> Tensor:
        """Normalised latents (B, T', C, h, w) -> frames (B, 1 + tc (T' - 1), 3, H, W), unclamped."""
        mu, std = self._stats(latents)
        z = latents * std + mu
        return self.decoder(z.transpose(1, 2)).transpose(1, 2)

    def forward(self, video: Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        """Reconstruct (sampling the posterior when training a KL latent)."""
        mean, logvar = self.encode_moments(video)
        z = mean
        if logvar is not None and self.training:
            z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        recon = self.decoder(z.transpose(1, 2)).transpose(1, 2)
        return VAEOutput(recon=recon, mean=mean, logvar=logvar)

    def loss(self, video: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, dict[str, Tensor]]:
        """L1 + MSE reconstruction plus ``kl_weight`` * KL; returns (loss, detached parts)."""
        out = self(video, generator=generator)
        l1 = (out.recon - video).abs().mean()
        mse = (out.recon - video).pow(2).mean()
        kl = torch.zeros((), device=video.device)
        if out.logvar is not None:
            kl = 0.5 * (out.mean.pow(2) + out.logvar.exp() - 1.0 - out.logvar).mean()
        total = l1 + mse + self.cfg.kl_weight * kl
        return total, {"l1": l1.detach(), "mse": mse.detach(), "kl": kl.detach()}

    @torch.no_grad()
    def set_latent_stats(self, mean: Tensor, std: Tensor) -> None:
        """Store per-channel latent statistics (C,) used to normalise encode/decode."""
        self.latent_mean.copy_(mean.to(self.latent_mean))
        self.latent_std.copy_(std.clamp_min(1e-6).to(self.latent_std))

    def load_pretrained(self, path: str | Path, prefix: str = "") -> None:
        """Load an external state_dict file; raise listing every mismatch."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"VAE weights {path} do not exist")
        blob = torch.load(path, map_location="cpu", weights_only=True)
        state = blob.get("state_dict", blob) if isinstance(blob, dict) else None
        if not isinstance(state, dict):
            raise ValueError(f"{path} holds a {type(blob).__name__}, expected a state_dict")
        if prefix:
            state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
        check_state_dict(self, state, source=str(path))
        self.load_state_dict(state, strict=True)
        log.info("loaded VAE weights from %s (%d tensors)", path, len(state))


def check_state_dict(module: nn.Module, state: dict[str, Tensor], source: str) -> None:
    """Raise ValueError naming missing, unexpected and mis-shaped keys."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if missing or unexpected or shapes:
        def head(items: list[str]) -> str:
            return ", ".join(items[:8]) + (f" ... (+{len(items) - 8})" if len(items) > 8 else "")

        raise ValueError(
            f"weights in {source} do not match this VAE config: "
            f"{len(missing)} missing [{head(missing)}], {len(unexpected)} unexpected [{head(unexpected)}], "
            f"{len(shapes)} shape mismatches [{head(shapes)}]. Check latent_channels/base_channels/"
            "channel_mults/num_res_blocks/latent_type, or set pretrained_prefix."
        )
