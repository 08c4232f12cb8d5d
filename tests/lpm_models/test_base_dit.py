"""Base LPM DiT: shapes, reference RoPE segments, audio windows, condition dropout."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lpm_models.base import (
    LISTEN,
    SPEAK,
    ConditionKeep,
    LPMConditions,
    LPMDiT,
    audio_window_mask,
    block_sources,
    latent_frame_spans,
)
from lpm_models.configs import ConditionDropout, DiTConfig, get_preset

T, H, W = 3, 8, 8  # latent clip (tc = 2 -> 5 video frames)


@pytest.fixture(scope="module")
def cfg() -> DiTConfig:
    return get_preset("tiny").dit


def make_cond(cfg: DiTConfig, batch: int = 2, refs: int = 1, frames: int = T, seed: int = 0) -> LPMConditions:
    g = torch.Generator().manual_seed(seed)
    n_audio = 1 + cfg.temporal_factor * (frames - 1)
    return LPMConditions(
        text=torch.randn(batch, 5, cfg.text_dim, generator=g),
        text_mask=torch.ones(batch, 5, dtype=torch.bool),
        audio_self=torch.randn(batch, n_audio, cfg.audio_dim, generator=g),
        audio_other=torch.randn(batch, n_audio, cfg.audio_dim, generator=g),
        refs=torch.randn(batch, refs, cfg.in_channels, H, W, generator=g) if refs else None,
    )


def live_dit(cfg: DiTConfig, **overrides: object) -> LPMDiT:
    """A DiT whose zero-initialised output/modulation layers are randomised, so every
    input visibly reaches the output (a freshly initialised DiT outputs zeros)."""
    torch.manual_seed(0)
    dit = LPMDiT(replace(cfg, **overrides)).eval()
    with torch.no_grad():
        torch.nn.init.normal_(dit.final.linear.weight, std=0.1)
        torch.nn.init.normal_(dit.time_mod.proj.weight, std=0.01)
    return dit


def test_forward_shapes_with_and_without_references(cfg: DiTConfig) -> None:
    dit = LPMDiT(cfg).eval()
    x = torch.randn(2, T, cfg.in_channels, H, W)
    with torch.no_grad():
        for refs in (0, 1, 2):
            v = dit(x, torch.rand(2), make_cond(cfg, refs=refs))
            assert v.shape == x.shape
        assert dit(x, torch.rand(2, T), make_cond(cfg)).shape == x.shape  # per-frame timesteps
    assert dit(x, torch.rand(2), make_cond(cfg)).abs().max() == 0  # zero-initialised output layer


def test_patchify_round_trip(cfg: DiTConfig) -> None:
    dit = LPMDiT(cfg)
    x = torch.randn(2, T, cfg.in_channels, H, W)
    tokens = dit.patchify(x)
    assert tokens.shape == (2, T * (H // 2) * (W // 2), cfg.in_channels * 4)
    torch.testing.assert_close(dit.unpatchify(tokens, T, H, W), x)


def test_reference_segments_get_distinct_rope_positions(cfg: DiTConfig) -> None:
    dit = LPMDiT(cfg)
    pos = dit.positions(refs=2, frames=T, hp=4, wp=4, device=torch.device("cpu"))
    per = 16
    ref0, ref1, video0 = pos[:per], pos[per : 2 * per], pos[2 * per : 3 * per]
    assert torch.equal(ref0[:, 1:], video0[:, 1:])  # same (h, w) grid ...
    assert (ref0[:, 0] != video0[:, 0]).all() and (ref0[:, 0] != ref1[:, 0]).all()  # ... distinct segments
    assert set(video0[:, 0].tolist()) == {0}


def test_layer_parity_assigns_speak_and_listen_audio(cfg: DiTConfig) -> None:
    dit = LPMDiT(cfg)
    for i, block in enumerate(dit.blocks):
        assert block.cross_sources == block_sources(i) == (("text", SPEAK) if i % 2 == 0 else ("text", LISTEN))
    assert dit.blocks[0].cross.kv[SPEAK] is not dit.blocks[2].cross.kv[SPEAK]  # own K/V per layer


def test_window_mask_geometry() -> None:
    spans = latent_frame_spans(3, 2)  # latent 0 -> frame 0, latent 1 -> frames 1-2, latent 2 -> 3-4
    assert spans.tolist() == [[0, 0], [1, 2], [3, 4]]
    mask = audio_window_mask(spans, num_audio=5, audio_start=0, window=(1, 0), tokens_per_frame=2)
    assert mask.shape == (6, 5)
    assert mask[2].tolist() == [True, True, True, False, False]  # latent 1 sees frames 0..2
    assert torch.equal(mask[2], mask[3])


def _frame_out(dit: LPMDiT, cond: LPMConditions, x: torch.Tensor, t: torch.Tensor, frame: int) -> torch.Tensor:
    with torch.no_grad():
        return dit(x, t, cond)[:, frame]


@pytest.mark.parametrize(("depth", "field", "window_name"), [(1, "audio_self", "speak_window"), (2, "audio_other", "listen_window")])
def test_audio_only_reaches_latents_through_its_window(cfg: DiTConfig, depth: int, field: str, window_name: str) -> None:
    """The last block is the only one seeing this audio, so per-frame locality is exact:
    audio outside a latent frame's window leaves that frame unchanged, inside it does not."""
    frames = 5
    window = (1, 1) if field == "audio_self" else (3, 0)
    dit = live_dit(cfg, depth=depth, **{window_name: window})
    cond = make_cond(cfg, batch=1, refs=1, frames=frames)
    x = torch.randn(1, frames, cfg.in_channels, H, W)
    t = torch.full((1,), 0.5)
    base = _frame_out(dit, cond, x, t, frame=1)  # latent 1 = video frames 1..2
    first, last = 1 - window[0], 2 + window[1]
    n_audio = getattr(cond, field).shape[1]
    for f in range(n_audio):
        audio = getattr(cond, field).clone()
        audio[:, f] = torch.randn(audio[:, f].shape, generator=torch.Generator().manual_seed(f))
        changed = (_frame_out(dit, replace(cond, **{field: audio}), x, t, frame=1) - base).abs().max()
        inside = max(first, 0) <= f <= last
        assert (changed > 1e-5) == inside, (f, float(changed))


def test_dropout_rates_are_independent_and_as_configured() -> None:
    rates = ConditionDropout(text=0.1, audio_self=0.3, audio_other=0.5, refs=0.2)
    keep = ConditionKeep.sample(40000, rates, generator=torch.Generator().manual_seed(0))
    drops = {name: 1 - getattr(keep, name).float().mean().item() for name in ("text", "audio_self", "audio_other", "refs")}
    for name, value in drops.items():
        assert value == pytest.approx(getattr(rates, name), abs=0.01), name
    both = (~keep.audio_self & ~keep.audio_other).float().mean().item()
    assert both == pytest.approx(0.3 * 0.5, abs=0.01)


@pytest.mark.parametrize("dropped", ["text", "audio_self", "audio_other", "refs"])
def test_dropped_condition_no_longer_influences_output(cfg: DiTConfig, dropped: str) -> None:
    dit = live_dit(cfg, depth=2)
    cond = make_cond(cfg, batch=2, refs=1)
    other = make_cond(cfg, batch=2, refs=1, seed=1)
    changed = replace(cond, **{dropped: getattr(other, dropped)})
    x, t = torch.randn(2, T, cfg.in_channels, H, W), torch.full((2,), 0.7)
    flags = {name: torch.tensor([True, True]) for name in ("text", "audio_self", "audio_other", "refs")}
    flags[dropped] = torch.tensor([False, True])  # drop for sample 0 only
    keep = ConditionKeep(**flags)
    with torch.no_grad():
        a, b = dit(x, t, cond, keep), dit(x, t, changed, keep)
    torch.testing.assert_close(a[0], b[0], atol=1e-5, rtol=1e-5)  # dropped: value irrelevant
    assert (a[1] - b[1]).abs().max() > 1e-4  # kept: value matters


def test_padded_references_are_ignored(cfg: DiTConfig) -> None:
    dit = live_dit(cfg, depth=2)
    cond = make_cond(cfg, batch=1, refs=2)
    x, t = torch.randn(1, T, cfg.in_channels, H, W), torch.full((1,), 0.5)
    mask = torch.tensor([[True, False]])
    junk = cond.refs.clone()
    junk[:, 1] = 100.0
    with torch.no_grad():
        a = dit(x, t, replace(cond, ref_mask=mask))
        b = dit(x, t, replace(cond, refs=junk, ref_mask=mask))
        only_first = dit(x, t, replace(cond, refs=cond.refs[:, :1]))
        unmasked = dit(x, t, cond)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a, only_first, atol=1e-5, rtol=1e-5)  # a masked slot is as if absent
    assert (a - unmasked).abs().max() > 1e-4


def test_appearance_reference_is_channel_conditioning(cfg: DiTConfig) -> None:
    assert cfg.ref_concat and not get_preset("lpm-17b").dit.ref_concat  # tiny on; the paper's design off
    assert "ref_embed.weight" not in LPMDiT(replace(cfg, depth=1, ref_concat=False)).state_dict()
    dit = live_dit(cfg, depth=2)
    cond = make_cond(cfg, batch=1, refs=1)
    x, t = torch.randn(1, T, cfg.in_channels, H, W), torch.full((1,), 0.9)
    with torch.no_grad():
        with_path = dit(x, t, cond)
        dit.ref_embed.weight.zero_()  # attention-only references
        without_path = dit(x, t, cond)
    assert (with_path - without_path).abs().max() > 1e-3
    # every frame's token at a grid cell receives the reference's token of that same cell
    ref_tokens = LPMDiT(replace(cfg, depth=1)).eval()
    with torch.no_grad():
        e = ref_tokens.reference_embedding(cond.refs)
        video = torch.zeros(1, T * e.shape[1], cfg.dim)
        added = ref_tokens.add_reference(video, e).view(1, T, e.shape[1], cfg.dim)
    for frame in range(T):
        torch.testing.assert_close(added[:, frame], e)


def test_masked_or_dropped_appearance_reference_is_as_if_absent(cfg: DiTConfig) -> None:
    dit = live_dit(cfg, depth=2)
    cond = make_cond(cfg, batch=1, refs=1)
    x, t = torch.randn(1, T, cfg.in_channels, H, W), torch.full((1,), 0.6)
    with torch.no_grad():
        absent = dit(x, t, replace(cond, refs=None))
        masked = dit(x, t, replace(cond, ref_mask=torch.tensor([[False]])))
        dropped = dit(x, t, cond, ConditionKeep.constant(1, refs=False))
        present = dit(x, t, cond)
    torch.testing.assert_close(masked, absent, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(dropped, absent, atol=1e-5, rtol=1e-5)
    assert (present - absent).abs().max() > 1e-3


def test_gradient_checkpointing_gives_the_same_gradients(cfg: DiTConfig) -> None:
    dit = live_dit(cfg, depth=2).train()
    cond = make_cond(cfg)
    x, t = torch.randn(2, T, cfg.in_channels, H, W), torch.rand(2)
    grads = []
    for flag in (False, True):
        dit.zero_grad()
        dit.gradient_checkpointing = flag
        dit(x, t, cond).pow(2).mean().backward()
        grads.append(dit.blocks[0].attn.qkv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1], atol=1e-6, rtol=1e-5)
