"""Causal video VAE: shapes, causality, pretrained loading, PSNR, learning."""

from __future__ import annotations

import math
from dataclasses import replace
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lpm_models.configs import VAEConfig, get_preset
from lpm_models.vae import VideoVAE, psnr


@pytest.fixture(scope="module")
def cfg() -> VAEConfig:
    return get_preset("tiny").vae


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads; on a busy 2-core box they lose a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def vae(cfg: VAEConfig) -> VideoVAE:
    torch.manual_seed(0)
    return VideoVAE(cfg).eval()


def moving_pattern(frames: int = 5, size: int = 32) -> torch.Tensor:
    """A blob drifting over drifting stripes: (1, T, 3, H, W) in [-1, 1]."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for t in range(frames):
        blob = torch.exp(-((xx - 8 - 3 * t) ** 2 + (yy - 12 - t) ** 2) / 20.0)
        stripes = 0.5 * torch.sin(2 * math.pi * (xx + 2 * t) / 16)
        out.append(torch.stack([blob * 2 - 1, stripes, blob - stripes * 0.5]).clamp(-1, 1))
    return torch.stack(out)[None]


@torch.no_grad()
def test_tiny_shapes_at_native_resolution(vae: VideoVAE, cfg: VAEConfig) -> None:
    tiny = get_preset("tiny")
    video = torch.rand(1, tiny.video_frames(3), 3, tiny.height, tiny.width) * 2 - 1
    z = vae.encode(video)
    s = cfg.spatial_factor
    assert z.shape == (1, 3, cfg.latent_channels, tiny.height // s, tiny.width // s)
    assert vae.decode(z).shape == video.shape


@torch.no_grad()
def test_encoder_and_decoder_are_causal_in_time(vae: VideoVAE) -> None:
    video = moving_pattern(5, 32)
    z = vae.encode(video)
    later = video.clone()
    later[:, 3:] = -later[:, 3:]  # change frames 3, 4 (latent 2 when tc = 2)
    z2 = vae.encode(later)
    torch.testing.assert_close(z[:, :2], z2[:, :2])
    assert (z[:, 2] - z2[:, 2]).abs().max() > 1e-4
    # reference image == first latent of a clip starting with it
    torch.testing.assert_close(vae.encode_image(video[:, 0]), z[:, :1], atol=1e-5, rtol=1e-4)
    # frame 0 is decoded from latent 0 alone
    torch.testing.assert_close(vae.decode(z[:, :1])[:, 0], vae.decode(z)[:, 0], atol=1e-5, rtol=1e-4)


def test_rejects_frame_counts_that_do_not_fit(vae: VideoVAE) -> None:
    with pytest.raises(ValueError, match="1 \\+"):
        vae.encode(torch.zeros(1, 4, 3, 32, 32))
    with pytest.raises(ValueError):
        vae.encode(torch.zeros(1, 5, 3, 30, 32))


def test_latent_stats_normalise_and_round_trip(vae: VideoVAE) -> None:
    video = moving_pattern(3, 32)
    with torch.no_grad():
        raw = vae.encode(video)
        vae.set_latent_stats(raw.mean(dim=(0, 1, 3, 4)), raw.std(dim=(0, 1, 3, 4)))
        z = vae.encode(video)
        assert z.mean(dim=(0, 1, 3, 4)).abs().max() < 1e-4
        torch.testing.assert_close(vae.decode(z), vae.decoder(raw.transpose(1, 2)).transpose(1, 2), atol=1e-4, rtol=1e-4)


def test_pretrained_weights_load_and_mismatch_is_explained(tmp_path: Path, vae: VideoVAE, cfg: VAEConfig) -> None:
    path = tmp_path / "vae.pt"
    torch.save({"state_dict": {f"vae.{k}": v for k, v in vae.state_dict().items()}}, path)
    loaded = VideoVAE.from_config(replace(cfg, pretrained_path=str(path), pretrained_prefix="vae."))
    for k, v in vae.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    with pytest.raises(ValueError, match="shape mismatches") as err:
        VideoVAE.from_config(replace(cfg, latent_channels=4, pretrained_path=str(path), pretrained_prefix="vae."))
    assert "latent_channels" in str(err.value)
    with pytest.raises(ValueError, match="missing"):
        VideoVAE.from_config(replace(cfg, pretrained_path=str(path)))  # prefix not stripped
    with pytest.raises(FileNotFoundError):
        VideoVAE.from_config(replace(cfg, pretrained_path=str(tmp_path / "absent.pt")))


def test_psnr_values() -> None:
    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert psnr(x, x) > 100
    noisy = x + 0.1
    # data range 2 -> PSNR = 10 log10(4 / 0.01) ~= 26.02 dB (before clamping effects)
    assert psnr(noisy.clamp(-1, 1), x).item() == pytest.approx(26.02, abs=1.0)
    assert psnr(noisy, x, reduction="none").shape == (2,)


def test_vae_learns_to_reconstruct_a_moving_pattern(cfg: VAEConfig, one_thread: None) -> None:
    torch.manual_seed(0)
    vae = VideoVAE(cfg)
    video = moving_pattern(5, 32)
    opt = torch.optim.Adam(vae.parameters(), lr=2e-3)
    gen = torch.Generator().manual_seed(0)

    def score() -> float:
        vae.eval()
        with torch.no_grad():
            value = psnr(vae.decode(vae.encode(video)), video).item()
        vae.train()
        return value

    before = score()
    for _ in range(60):
        loss, parts = vae.loss(video, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = score()
    assert after > before + 10.0 and after > 22.0, (before, after)
    assert set(parts) == {"l1", "mse", "kl"}
