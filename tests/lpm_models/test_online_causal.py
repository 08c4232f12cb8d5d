"""Causal DiT: streaming with the KV cache equals the chunk-causal full pass; sink + window cache."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from lpm_models.online.causal import CausalDiT, audio_limit, chunk_causal_mask
from tests.lpm_models.test_online_factory import live_base, live_online, make_conditions, online_cfg, small_config

CFG = small_config()
C, H, W = CFG.dit.in_channels, *CFG.latent_size


def stream(dit: CausalDiT, x: torch.Tensor, t: torch.Tensor, cond: object, chunk: int) -> torch.Tensor:
    cache = dit.encode_references(cond.refs, cond.ref_mask, batch=x.shape[0], latent_hw=(H, W))  # type: ignore[attr-defined]
    outs = []
    for j in range(x.shape[1] // chunk):
        sl = slice(j * chunk, (j + 1) * chunk)
        v, cache = dit(x[:, sl], t[:, sl], cond, cache)
        outs.append(v)
    return torch.cat(outs, dim=1)


def test_student_is_initialised_with_the_teacher_weights() -> None:
    base = live_base()
    model = live_online()
    for name, p in base.dit.state_dict().items():
        assert torch.equal(p, model.dit.state_dict()[name])
        assert torch.equal(p, model.refiner.state_dict()[name])  # type: ignore[union-attr]
    assert torch.equal(base.audio_encoder.conv1.weight, model.audio_encoder.conv1.weight)


@pytest.mark.parametrize(("refs", "masked"), [(0, None), (2, 1), (2, 0)])
def test_streaming_equals_full_sequence_under_chunk_causal_mask(refs: int, masked: int | None) -> None:
    o = online_cfg(chunk_latents=2, sink_chunks=1, window_chunks=2)
    dit = live_online(o).dit
    b, n = 2, 2 * (o.context_chunks + 1)  # window big enough: nothing evicted
    mask = None
    if refs:  # sample 1 lacks reference slot ``masked`` (slot 0 = the channel-conditioning appearance)
        mask = torch.ones(b, refs, dtype=torch.bool)
        mask[1, masked] = False
    cond = make_conditions(CFG, b, frames=n * 2 * 2, refs=refs, ref_mask=mask)
    g = torch.Generator().manual_seed(1)
    x, t = torch.randn(b, n, C, H, W, generator=g), torch.rand(b, n, generator=g)
    with torch.no_grad():
        full = dit.forward_sequence([x], [t], cond)[0]
        streamed = stream(dit, x, t, cond, o.chunk_latents)
    assert full.abs().mean() > 0.1  # a live model, not zeros
    torch.testing.assert_close(streamed, full, atol=1e-4, rtol=1e-4)


def test_cache_carries_the_appearance_reference_tokens() -> None:
    dit = live_online(online_cfg()).dit
    cond = make_conditions(CFG, 2, frames=9, refs=2, ref_mask=torch.tensor([[True, True], [False, True]]))
    cache = dit.encode_references(cond.refs, cond.ref_mask)
    p = (H // CFG.dit.patch_size) * (W // CFG.dit.patch_size)
    assert cache.ref_tokens is not None and cache.ref_tokens.shape == (2, p, CFG.dit.dim)
    assert cache.ref_tokens[0].abs().max() > 0 and cache.ref_tokens[1].abs().max() == 0  # masked appearance
    assert any(t is cache.ref_tokens for t in cache.tensors())  # counted in the cache's memory
    assert dit.encode_references(None, batch=2, latent_hw=(H, W)).ref_tokens is None


def test_history_group_matches_streaming_with_a_separately_committed_history() -> None:
    """Queries at one noise level over the cache of another copy (the noisy-history design)."""
    o = online_cfg()
    dit = live_online(o).dit
    b, n, c = 1, 6, o.chunk_latents
    cond = make_conditions(CFG, b, frames=n * 2)
    g = torch.Generator().manual_seed(2)
    hist, query = torch.randn(b, n, C, H, W, generator=g), torch.randn(b, n, C, H, W, generator=g)
    t_hist, t_query = torch.full((b, n), 0.5), torch.full((b, n), 1.0)
    with torch.no_grad():
        v_hist, v_query = dit.forward_sequence([hist, query], [t_hist, t_query], cond, history_group=0)
        cache = dit.encode_references(cond.refs)
        outs = []
        for j in range(n // c):
            sl = slice(j * c, (j + 1) * c)
            vq, _ = dit(query[:, sl], t_query[:, sl], cond, cache)  # evaluated, not committed
            _, cache = dit(hist[:, sl], t_hist[:, sl], cond, cache)  # the history that is committed
            outs.append(vq)
    torch.testing.assert_close(torch.cat(outs, 1), v_query, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(v_query, v_hist, atol=1e-3)


def test_chunks_see_the_past_not_the_future_and_all_of_their_own_chunk() -> None:
    o = online_cfg()
    dit = live_online(o).dit
    cond = make_conditions(CFG, 1, frames=24)
    x, t = torch.randn(1, 6, C, H, W), torch.rand(1, 6)
    with torch.no_grad():
        ref = dit.forward_sequence([x], [t], cond)[0]
        later = x.clone()
        later[:, 3] += torch.randn_like(later[:, 3])  # second latent of chunk 1
        out = dit.forward_sequence([later], [t], cond)[0]
    assert torch.equal(out[:, :2], ref[:, :2])  # chunk 0 unaffected by the future
    assert (out[:, 2] - ref[:, 2]).abs().max() > 1e-3  # same chunk: bidirectional
    assert (out[:, 4:] - ref[:, 4:]).abs().max() > 1e-3  # later chunk: causal


def test_audio_is_visible_only_once_delivered() -> None:
    o = online_cfg()
    dit = live_online(o).dit
    tc = CFG.dit.temporal_factor
    cond = make_conditions(CFG, 1, frames=24)
    x, t = torch.randn(1, 6, C, H, W), torch.rand(1, 6)
    limit = audio_limit(0, o.chunk_latents, tc)  # last audio frame delivered with chunk 0
    audio = cond.audio_self.clone()
    audio[:, limit + 1 :] = torch.randn_like(audio[:, limit + 1 :])
    with torch.no_grad():
        ref = dit.forward_sequence([x], [t], cond)[0]
        out = dit.forward_sequence([x], [t], replace(cond, audio_self=audio))[0]
    assert torch.equal(out[:, :2], ref[:, :2])
    assert (out[:, 2:4] - ref[:, 2:4]).abs().max() > 1e-3


def test_cache_is_constant_once_the_window_fills_and_sinks_persist() -> None:
    o = online_cfg(chunk_latents=2, sink_chunks=2, window_chunks=3)
    dit = live_online(o).dit
    cond = make_conditions(CFG, 1, frames=200)
    cache = dit.encode_references(cond.refs)
    sizes = []
    with torch.no_grad():
        for j in range(12):
            _, cache = dit(torch.randn(1, 2, C, H, W), torch.rand(1), cond, cache)
            sizes.append((cache.num_tokens, cache.nbytes, cache.num_tensors))
            assert [ch.index for ch in cache.sink] == list(range(min(j + 1, 2)))
            assert [ch.index for ch in cache.window] == list(range(max(2, j - 2), j + 1))
    full = o.context_chunks - 1  # zero-based chunk after which sink + window are full
    assert len(set(sizes[full:])) == 1
    assert sizes[full][0] == 2 * 4 + 5 * 2 * 4  # 2 reference frames + 5 chunks, 4 tokens per latent frame
    positions = torch.cat([cache.context_positions(), cache.slot_positions(cache.current_slot)])
    assert int(positions[:, 0].max()) == (o.context_chunks + 1) * 2 - 1  # RoPE time stays bounded
    # window chunks keep their true distance to the current chunk; sinks sit just before the window
    assert [cache.chunk_slot(ch.index) for ch in cache.chunks] == [0, 1, 2, 3, 4]


def test_sink_chunks_condition_every_later_chunk_and_evicted_chunks_none() -> None:
    o = online_cfg(chunk_latents=2, sink_chunks=1, window_chunks=0)  # context: references + chunk 0
    dit = live_online(o).dit
    cond = make_conditions(CFG, 1, frames=60)
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(1, 12, C, H, W, generator=g), torch.rand(1, 12, generator=g)

    def last_chunk(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return stream(dit, x, t, cond, 2)[:, -2:]

    ref = last_chunk(x)
    x_sink, x_mid = x.clone(), x.clone()
    x_sink[:, :2] += 1.0
    x_mid[:, 2:4] += 1.0
    assert (last_chunk(x_sink) - ref).abs().max() > 1e-3
    assert torch.equal(last_chunk(x_mid), ref)


def test_full_pass_refuses_clips_that_would_evict() -> None:
    o = online_cfg(chunk_latents=2, sink_chunks=1, window_chunks=1)
    dit = live_online(o).dit
    cond = make_conditions(CFG, 1, frames=40)
    with pytest.raises(ValueError, match="evict"):
        dit.forward_sequence([torch.randn(1, 8, C, H, W)], [torch.rand(1, 8)], cond)


def test_chunk_causal_mask_layout() -> None:
    m = chunk_causal_mask(refs=1, groups=2, chunks=3, chunk_latents=1, sink=1, window=1, history_group=0)
    # frames: ref | g0 c0 c1 c2 | g1 c0 c1 c2
    assert m[0].tolist() == [True] + [False] * 6
    assert m[3].tolist() == [True, True, True, True, False, False, False]  # g0 c2: sink c0, window c1, itself
    assert m[6].tolist() == [True, True, True, False, False, False, True]  # g1 c2 sees g0's history, itself
    assert m[5].tolist() == [True, True, False, False, False, True, False]  # g1 c1: sink c0 (= window) + itself
