"""Reusable transformer parts shared by the Base and Online LPM DiTs."""

from lpm_models.nn.adaln import ModulationProjection, TimestepEmbedder, gate, modulate
from lpm_models.nn.attention import CrossSource, KVContext, MultiSourceCrossAttention, SelfAttention, masked_attention
from lpm_models.nn.blocks import DiTBlock, FeedForward
from lpm_models.nn.rope import RotaryEmbedding, Rotation, grid_positions, segment_positions, split_head_dim_3d

__all__ = [
    "CrossSource",
    "DiTBlock",
    "FeedForward",
    "KVContext",
    "ModulationProjection",
    "MultiSourceCrossAttention",
    "RotaryEmbedding",
    "Rotation",
    "SelfAttention",
    "TimestepEmbedder",
    "gate",
    "grid_positions",
    "masked_attention",
    "modulate",
    "segment_positions",
    "split_head_dim_3d",
]
