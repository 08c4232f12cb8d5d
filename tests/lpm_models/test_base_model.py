"""Base LPM: flow-matching training loss, gradients, overfitting, generation."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from lpm_models.base import BaseLPM, LPMBatch, LPMConditions, LPMDiT
from lpm_models.base.flow import flow_loss, interpolate, velocity_target
from lpm_models.configs import LPMConfig, SamplerConfig, get_preset


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """Tiny tensors gain nothing from intra-op threads; on a busy 2-core box they lose a lot."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def cfg() -> LPMConfig:
    # the tiny architecture on a 32x32, 5-frame clip (3 latents of 4x4)
    tiny = get_preset("tiny")
    return replace(tiny, height=32, width=32, clip_frames=5,
                   sampler=SamplerConfig(steps=2, shift=1.0, text_scale=2.0, audio_scale=2.0, chunk_latents=3, overlap_latents=1))


def make_batch(cfg: LPMConfig, batch: int = 2, latents: int = 3) -> LPMBatch:
    g = torch.Generator().manual_seed(0)
    h, w = cfg.latent_size
    c = cfg.vae.latent_channels
    samples = cfg.video_frames(latents) * cfg.audio.samples_per_frame
    return LPMBatch(
        latents=torch.randn(batch, latents, c, h, w, generator=g),
        audio_self=torch.randn(batch, samples, generator=g) * 0.1,
        audio_other=torch.randn(batch, samples, generator=g) * 0.1,
        text=torch.randn(batch, 6, cfg.text.dim, generator=g),
        text_mask=torch.ones(batch, 6, dtype=torch.bool),
        refs=torch.randn(batch, 1, c, h, w, generator=g),
    )


def test_training_loss_backpropagates_into_dit_and_audio_encoder(cfg: LPMConfig) -> None:
    torch.manual_seed(0)
    model = BaseLPM(cfg)
    loss, stats = model.training_loss(make_batch(cfg), generator=torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert {"loss", "t_mean", "keep_text", "keep_refs"} <= set(stats)
    loss.backward()
    assert model.dit.final.linear.weight.grad.abs().sum() > 0
    # the audio encoder gets gradients once the zero-initialised output layer has moved
    with torch.no_grad():
        torch.nn.init.normal_(model.dit.final.linear.weight, std=0.02)
    model.zero_grad()
    model.training_loss(make_batch(cfg), generator=torch.Generator().manual_seed(1))[0].backward()
    assert model.audio_encoder.frame_proj.weight.grad.abs().sum() > 0


def test_context_frames_are_clean_and_not_scored(cfg: LPMConfig) -> None:
    torch.manual_seed(0)
    model = BaseLPM(cfg)
    seen: dict[str, torch.Tensor] = {}
    original = model.dit.forward

    def spy(x, t, cond, keep=None, latent_start=0):  # type: ignore[no-untyped-def]
        seen["x"], seen["t"] = x, t
        return original(x, t, cond, keep, latent_start)

    model.dit.forward = spy  # type: ignore[method-assign]
    batch = make_batch(cfg)
    model.training_loss(batch, generator=torch.Generator().manual_seed(0), context_frames=1)
    assert (seen["t"][:, 0] == 0).all() and (seen["t"][:, 1:] > 0).all()
    torch.testing.assert_close(seen["x"][:, 0], batch.latents[:, 0])
    with pytest.raises(ValueError, match="context_frames"):
        model.training_loss(batch, context_frames=3)


def test_audio_length_must_match_the_clip(cfg: LPMConfig) -> None:
    batch = make_batch(cfg)
    bad = replace(batch, audio_self=batch.audio_self[:, :-640], audio_other=batch.audio_other[:, :-640])
    with pytest.raises(ValueError, match="audio samples"):
        BaseLPM(cfg).training_loss(bad)


def test_tiny_dit_overfits_one_clip(one_thread: None) -> None:
    """Flow-matching loss on one clip (fixed noise/time draws) falls by >= 10x."""
    tiny = get_preset("tiny")
    torch.manual_seed(0)
    dit = LPMDiT(tiny.dit)
    g = torch.Generator().manual_seed(0)
    frames, c, size, batch = 3, tiny.dit.in_channels, 8, 4
    x0 = torch.randn(1, frames, c, size, size, generator=g).expand(batch, -1, -1, -1, -1)
    n_audio = tiny.video_frames(frames)
    cond = LPMConditions(
        text=torch.randn(1, 5, tiny.text.dim, generator=g).expand(batch, -1, -1),
        audio_self=torch.randn(1, n_audio, tiny.audio.dim, generator=g).expand(batch, -1, -1),
        audio_other=torch.randn(1, n_audio, tiny.audio.dim, generator=g).expand(batch, -1, -1),
        refs=torch.randn(1, 1, c, size, size, generator=g).expand(batch, -1, -1, -1, -1),
    )
    t = torch.tensor([0.2, 0.4, 0.6, 0.8])
    noise = torch.randn(batch, frames, c, size, size, generator=g)
    x_t, target = interpolate(x0, noise, t), velocity_target(x0, noise)
    opt = torch.optim.AdamW(dit.parameters(), lr=1e-3, weight_decay=0.0)
    losses = []
    for _ in range(60):
        loss = flow_loss(dit(x_t, t, cond), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 10, (losses[0], losses[-1])


def test_generate_returns_latents_for_the_whole_track(cfg: LPMConfig) -> None:
    torch.manual_seed(0)
    model = BaseLPM(cfg).eval()
    frames = cfg.video_frames(5)  # 5 latents: two chunks of 3 with overlap 1
    samples = frames * cfg.audio.samples_per_frame
    h, w = cfg.latent_size
    latents = model.generate(torch.randn(1, samples) * 0.1, torch.randn(1, samples) * 0.1,
                             text=torch.randn(1, 4, cfg.text.dim),
                             refs=torch.randn(1, 1, cfg.vae.latent_channels, h, w),
                             generator=torch.Generator().manual_seed(0))
    assert latents.shape == (1, 5, cfg.vae.latent_channels, h, w)


def test_training_timesteps_reach_the_samplers_start_with_a_uniform_share() -> None:
    from lpm_models.base.flow import sample_time
    from lpm_models.configs import FlowConfig

    g = torch.Generator().manual_seed(0)
    plain = sample_time(200_000, FlowConfig(), generator=g)
    mixed = sample_time(200_000, FlowConfig(uniform=0.2), generator=g)
    shifted = sample_time(200_000, FlowConfig(uniform=0.2, shift=3.0), generator=g)
    assert float((plain > 0.95).float().mean()) < 0.005  # logit-normal(0, 1) alone: ~0.16 %
    assert 0.009 < float((mixed > 0.95).float().mean()) < 0.013  # + 0.2 x 5 % uniform
    assert float((shifted > 0.95).float().mean()) > 0.04  # the shift moves mass towards noise
    assert float(plain.min()) > 0 and float(shifted.max()) < 1
    with pytest.raises(ValueError, match="uniform"):
        FlowConfig(uniform=1.5)
