"""3D RoPE with explicit positions and segment offsets."""

from __future__ import annotations

import pytest
import torch

from lpm_models.nn.rope import RotaryEmbedding, Rotation, grid_positions, segment_positions, split_head_dim_3d


def test_split_head_dim() -> None:
    assert split_head_dim_3d(128) == (44, 42, 42)
    assert split_head_dim_3d(32) == (12, 10, 10)
    with pytest.raises(ValueError):
        split_head_dim_3d(31)


def test_grid_positions_order_and_offset() -> None:
    pos = grid_positions(2, 3, 4, offset=(-4, 1, 0))
    assert pos.shape == (24, 3)
    assert pos[0].tolist() == [-4, 1, 0]
    assert pos[1].tolist() == [-4, 1, 1]  # w fastest
    assert pos[4].tolist() == [-4, 2, 0]
    assert pos[12].tolist() == [-3, 1, 0]  # then h, then t


def test_rotation_preserves_norm_and_shape() -> None:
    rope = RotaryEmbedding(split_head_dim_3d(32))
    x = torch.randn(2, 24, 3, 32)
    y = rope(x, grid_positions(2, 3, 4))
    assert y.shape == x.shape
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1))


def test_scores_depend_only_on_relative_position() -> None:
    rope = RotaryEmbedding(split_head_dim_3d(32))
    q, k = torch.randn(1, 1, 1, 32), torch.randn(1, 1, 1, 32)

    def score(pq: list[int], pk: list[int]) -> torch.Tensor:
        return (rope(q, torch.tensor([pq])) * rope(k, torch.tensor([pk]))).sum()

    torch.testing.assert_close(score([1, 2, 3], [0, 1, 1]), score([11, -3, 7], [10, -4, 5]))
    assert not torch.allclose(score([1, 2, 3], [0, 1, 1]), score([1, 2, 3], [0, 1, 2]))


def test_reference_offsets_keep_references_distinct() -> None:
    """A reference token and a video token at the same (t, h, w) rotate differently;
    the same segment offset gives the same rotation."""
    rope = RotaryEmbedding(split_head_dim_3d(32))
    feature = torch.randn(1, 1, 1, 32).expand(1, 12, 1, 32)  # same vector at every token
    video = segment_positions([(1, 3, 4)], [(0, 0, 0)])
    ref_a = segment_positions([(1, 3, 4)], [(-4, 0, 0)])
    ref_b = segment_positions([(1, 3, 4)], [(-8, 0, 0)])
    v, a, b = rope(feature, video), rope(feature, ref_a), rope(feature, ref_b)
    assert (v - a).abs().flatten(1).amax(dim=1).min() > 1e-3  # every token differs
    assert (a - b).abs().max() > 1e-3  # two references differ from each other
    torch.testing.assert_close(rope(feature, segment_positions([(1, 3, 4)], [(-4, 0, 0)])), a)


def test_rotation_concatenation_matches_joint_rotation() -> None:
    rope = RotaryEmbedding((8, 8))
    p1, p2 = torch.randint(-5, 5, (3, 2)), torch.randint(-5, 5, (4, 2))
    joint = rope.rotation(torch.cat([p1, p2]))
    cat = Rotation.cat([rope.rotation(p1), rope.rotation(p2)])
    torch.testing.assert_close(joint.cos, cat.cos)
    torch.testing.assert_close(joint.sin, cat.sin)
