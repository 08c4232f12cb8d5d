"""The shared DiT block: modulation, cross-attention scope, KV interface for causal use."""

from __future__ import annotations

import torch

from lpm_models.nn.adaln import ModulationProjection, TimestepEmbedder, modulate
from lpm_models.nn.attention import CrossSource, KVContext
from lpm_models.nn.blocks import MODULATION_CHUNKS, DiTBlock
from lpm_models.nn.rope import RotaryEmbedding, grid_positions, split_head_dim_3d

DIM, HEADS, P = 32, 2, 4


def _block() -> tuple[DiTBlock, RotaryEmbedding]:
    torch.manual_seed(0)
    return DiTBlock(DIM, HEADS, 4 * DIM, ("text", "speak")), RotaryEmbedding(split_head_dim_3d(DIM // HEADS))


def test_modulate_is_per_frame() -> None:
    x = torch.zeros(1, 2 * P, 3)
    shift = torch.tensor([[[1.0, 1, 1], [2.0, 2, 2]]])
    out = modulate(x, shift, torch.zeros_like(shift))
    assert out[0, :P].eq(1).all() and out[0, P:].eq(2).all()


def test_timestep_embedding_and_projection_shapes() -> None:
    emb = TimestepEmbedder(DIM)(torch.rand(2, 5))
    mod = ModulationProjection(DIM, MODULATION_CHUNKS)(emb)
    assert emb.shape == (2, 5, DIM) and mod.shape == (2, 5, MODULATION_CHUNKS, DIM)
    assert mod.abs().max() == 0  # adaLN-zero start


def test_block_shapes_and_reference_tokens_skip_cross_attention() -> None:
    block, rope = _block()
    frames = 3  # 1 reference frame + 2 video frames
    x = torch.randn(2, frames * P, DIM)
    mod = torch.randn(2, frames, MODULATION_CHUNKS, DIM) * 0.1
    rot = rope.rotation(grid_positions(frames, 2, 2))
    text = torch.randn(2, 5, DIM)
    out, (k, v) = block(x, mod, rot, {"text": CrossSource(text)}, cross_start=P)
    assert out.shape == x.shape and k.shape == (2, frames * P, HEADS, DIM // HEADS)
    out2, _ = block(x, mod, rot, {"text": CrossSource(text + 3.0)}, cross_start=P)
    torch.testing.assert_close(out[:, :P], out2[:, :P])  # reference tokens: no text
    assert (out[:, P:] - out2[:, P:]).abs().max() > 1e-4  # video tokens: text matters


def test_block_kv_interface_supports_chunk_causal_streaming() -> None:
    """Chunk 1 with chunk 0's cached k/v equals the joint pass under a chunk-causal mask."""
    block, rope = _block()
    chunk = 2 * P
    x = torch.randn(1, 2 * chunk, DIM)
    mod = torch.randn(1, 4, MODULATION_CHUNKS, DIM) * 0.1
    pos = grid_positions(4, 2, 2)
    mask = torch.ones(2 * chunk, 2 * chunk, dtype=torch.bool)
    mask[:chunk, chunk:] = False
    text = {"text": CrossSource(torch.randn(1, 3, DIM))}
    joint, _ = block(x, mod, rope.rotation(pos), text, attn_mask=mask)
    first, (k0, v0) = block(x[:, :chunk], mod[:, :2], rope.rotation(pos[:chunk]), text)
    ctx = KVContext(k0, v0, rope.rotation(pos[:chunk]))
    second, _ = block(x[:, chunk:], mod[:, 2:], rope.rotation(pos[chunk:]), text, kv_context=ctx)
    torch.testing.assert_close(first, joint[:, :chunk], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(second, joint[:, chunk:], atol=1e-5, rtol=1e-5)
