"""Euler sampler: shapes, guidance algebra, chunk-wise continuation."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lpm_models.base import ConditionKeep, Guidance, LPMConditions, LPMDiT, sample_chunk, sample_video
from lpm_models.base.conditioning import audio_frames_for_latents
from lpm_models.base.flow import euler_timesteps
from lpm_models.configs import DiTConfig, get_preset

H = W = 8


@pytest.fixture(scope="module")
def cfg() -> DiTConfig:
    return replace(get_preset("tiny").dit, depth=2)


@pytest.fixture(scope="module")
def dit(cfg: DiTConfig) -> LPMDiT:
    torch.manual_seed(0)
    model = LPMDiT(cfg).eval()
    with torch.no_grad():  # non-zero output layer so guidance terms differ
        torch.nn.init.normal_(model.final.linear.weight, std=0.1)
    return model


def make_cond(cfg: DiTConfig, latents: int, batch: int = 1) -> LPMConditions:
    g = torch.Generator().manual_seed(0)
    n = 1 + cfg.temporal_factor * (latents - 1)
    return LPMConditions(
        text=torch.randn(batch, 4, cfg.text_dim, generator=g),
        audio_self=torch.randn(batch, n, cfg.audio_dim, generator=g),
        audio_other=torch.randn(batch, n, cfg.audio_dim, generator=g),
        refs=torch.randn(batch, 1, cfg.in_channels, H, W, generator=g),
    )


def test_timesteps_run_from_noise_to_clean() -> None:
    ts = euler_timesteps(4, shift=3.0)
    assert ts[0] == 1.0 and ts[-1] == 0.0 and (ts[1:] < ts[:-1]).all()


def test_guidance_scale_one_equals_the_conditional_ode(dit: LPMDiT, cfg: DiTConfig) -> None:
    frames, steps = 3, 3
    cond = make_cond(cfg, frames)
    noise = torch.randn(1, frames, cfg.in_channels, H, W, generator=torch.Generator().manual_seed(1))
    out = sample_chunk(dit, noise, cond, steps=steps, shift=1.0, guidance=Guidance(1.0, 1.0))
    assert out.shape == noise.shape
    x, ts = noise.clone(), euler_timesteps(steps, 1.0)
    with torch.no_grad():
        for i in range(steps):
            v = dit(x, ts[i].expand(1), cond, ConditionKeep.constant(1))
            x = x + (ts[i + 1] - ts[i]) * v
    torch.testing.assert_close(out, x, atol=1e-4, rtol=1e-4)
    guided = sample_chunk(dit, noise, cond, steps=steps, shift=1.0, guidance=Guidance(3.0, 2.0))
    assert (guided - out).abs().max() > 1e-3


def test_context_frames_stay_fixed(dit: LPMDiT, cfg: DiTConfig) -> None:
    cond = make_cond(cfg, 4)
    ctx = torch.randn(1, 2, cfg.in_channels, H, W)
    out = sample_chunk(dit, torch.randn(1, 4, cfg.in_channels, H, W), cond, steps=2, shift=1.0,
                       guidance=Guidance(2.0, 2.0), context=ctx)
    torch.testing.assert_close(out[:, :2], ctx)
    with pytest.raises(ValueError, match="shorter"):
        sample_chunk(dit, torch.randn(1, 2, cfg.in_channels, H, W), cond, steps=1, shift=1.0,
                     guidance=Guidance(), context=ctx)


@pytest.mark.parametrize(("total", "chunk", "overlap"), [(7, 4, 2), (5, 5, 1), (6, 3, 0)])
def test_chunked_continuation_produces_requested_length(dit: LPMDiT, cfg: DiTConfig, total: int, chunk: int,
                                                        overlap: int) -> None:
    cond = make_cond(cfg, total, batch=2)
    out = sample_video(dit, cond, total, (cfg.in_channels, H, W), chunk_latents=chunk, overlap=overlap, steps=2,
                       shift=1.0, guidance=Guidance(2.0, 1.5), generator=torch.Generator().manual_seed(0))
    assert out.shape == (2, total, cfg.in_channels, H, W) and torch.isfinite(out).all()


def test_continuation_sees_the_audio_of_its_own_frames(cfg: DiTConfig) -> None:
    first, last = audio_frames_for_latents(3, cfg.temporal_factor, latent_start=4, windows=[(2, 2), (25, 4)])
    # latents 4..6 cover video frames 7..12 (tc = 2); windows widen to 25 back, 4 ahead
    assert (first, last) == (0, 16)
    cond = make_cond(cfg, 10)
    sliced = cond.slice_audio(5, 12)
    assert sliced.audio_start == 5 and sliced.audio_self.shape[1] == 8
    torch.testing.assert_close(sliced.audio_self, cond.audio_self[:, 5:13])
