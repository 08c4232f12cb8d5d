"""Self-attention with masks and pre-RoPE KV contexts; multi-source cross-attention."""

from __future__ import annotations

import pytest
import torch

from lpm_models.nn.attention import CrossSource, KVContext, MultiSourceCrossAttention, SelfAttention, masked_attention
from lpm_models.nn.rope import RotaryEmbedding, grid_positions, split_head_dim_3d

DIM, HEADS = 32, 2


@pytest.fixture()
def rope() -> RotaryEmbedding:
    return RotaryEmbedding(split_head_dim_3d(DIM // HEADS))


def test_self_attention_shapes_and_prerope_keys(rope: RotaryEmbedding) -> None:
    torch.manual_seed(0)
    attn = SelfAttention(DIM, HEADS)
    x = torch.randn(2, 12, DIM)
    out, (k, v) = attn(x, rope.rotation(grid_positions(1, 3, 4)))
    assert out.shape == (2, 12, DIM) and k.shape == v.shape == (2, 12, HEADS, DIM // HEADS)
    # keys come back before RoPE: identical whatever positions this call used
    _, (k2, _) = attn(x, rope.rotation(grid_positions(1, 3, 4, offset=(7, 0, 0))))
    torch.testing.assert_close(k, k2)


def test_kv_context_reproduces_full_sequence_attention(rope: RotaryEmbedding) -> None:
    """Attending with cached (pre-RoPE) keys + read-time positions equals attending jointly."""
    torch.manual_seed(0)
    attn = SelfAttention(DIM, HEADS)
    x = torch.randn(1, 24, DIM)
    pos = grid_positions(2, 3, 4)
    causal_chunks = torch.ones(24, 24, dtype=torch.bool)
    causal_chunks[:12, 12:] = False  # chunk 0 cannot see chunk 1
    full, _ = attn(x, rope.rotation(pos), attn_mask=causal_chunks)
    _, (k0, v0) = attn(x[:, :12], rope.rotation(pos[:12]))
    second, _ = attn(x[:, 12:], rope.rotation(pos[12:]), context=KVContext(k0, v0, rope.rotation(pos[:12])))
    torch.testing.assert_close(second, full[:, 12:], atol=1e-5, rtol=1e-5)
    # RoPE is relative: shifting cache and chunk positions together changes nothing
    shifted = pos + torch.tensor([100, 0, 0])
    again, _ = attn(x[:, 12:], rope.rotation(shifted[12:]), context=KVContext.at_positions(k0, v0, shifted[:12], rope))
    torch.testing.assert_close(again, second, atol=1e-4, rtol=1e-4)


def test_kv_context_validates_lengths(rope: RotaryEmbedding) -> None:
    k = torch.zeros(1, 3, HEADS, DIM // HEADS)
    with pytest.raises(ValueError, match="mismatch"):
        KVContext(k, k, rope.rotation(grid_positions(1, 1, 2)))


def test_fully_masked_rows_give_zeros() -> None:
    q, k, v = torch.randn(1, 1, 3, 4), torch.randn(1, 1, 5, 4), torch.randn(1, 1, 5, 4)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False
    out = masked_attention(q, k, v, mask)
    assert torch.isfinite(out).all() and out[0, 0, 1].abs().max() == 0
    assert out[0, 0, 0].abs().max() > 0


def test_cross_attention_sums_sources_and_keep_gates() -> None:
    torch.manual_seed(0)
    cross = MultiSourceCrossAttention(DIM, HEADS, ("text", "speak"))
    x = torch.randn(2, 6, DIM)
    text = CrossSource(torch.randn(2, 4, DIM))
    audio = CrossSource(torch.randn(2, 5, DIM))
    bias = cross.proj.bias
    both = cross(x, {"text": text, "speak": audio}) - bias
    parts = (cross(x, {"text": text}) - bias) + (cross(x, {"speak": audio}) - bias)
    torch.testing.assert_close(both, parts, atol=1e-5, rtol=1e-5)
    gated = cross(x, {"text": text, "speak": CrossSource(audio.tokens, keep=torch.tensor([True, False]))})
    torch.testing.assert_close(gated[1], cross(x, {"text": text})[1])
    torch.testing.assert_close(gated[0], both[0] + bias)
    with pytest.raises(KeyError):
        cross(x, {"listen": audio})


def test_cross_attention_mask_limits_what_each_query_sees() -> None:
    torch.manual_seed(0)
    cross = MultiSourceCrossAttention(DIM, HEADS, ("speak",))
    x, ctx = torch.randn(1, 2, DIM), torch.randn(1, 4, DIM)
    mask = torch.tensor([[True, True, False, False], [False, False, True, True]])
    out = cross(x, {"speak": CrossSource(ctx, mask)})
    ctx2 = ctx.clone()
    ctx2[:, 3] += 5.0  # only query 1 may see token 3
    out2 = cross(x, {"speak": CrossSource(ctx2, mask)})
    torch.testing.assert_close(out[:, 0], out2[:, 0])
    assert (out[:, 1] - out2[:, 1]).abs().max() > 1e-4
