"""Base LPM: the bidirectional diffusion transformer, flow matching and the sampler."""

from lpm_models.base.conditioning import (
    ConditionKeep,
    LPMConditions,
    audio_frames_for_latents,
    audio_window_mask,
    latent_frame_spans,
)
from lpm_models.base.dit import LISTEN, SPEAK, TEXT, LPMDiT, block_sources
from lpm_models.base.model import BaseLPM, LPMBatch
from lpm_models.base.sampler import Guidance, guided_velocity, sample_chunk, sample_video

__all__ = [
    "LISTEN",
    "SPEAK",
    "TEXT",
    "BaseLPM",
    "ConditionKeep",
    "Guidance",
    "LPMBatch",
    "LPMConditions",
    "LPMDiT",
    "audio_frames_for_latents",
    "audio_window_mask",
    "block_sources",
    "guided_velocity",
    "latent_frame_spans",
    "sample_chunk",
    "sample_video",
]
