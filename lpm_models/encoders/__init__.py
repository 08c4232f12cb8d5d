"""Condition encoders: log-mel + streaming audio encoder, frozen text encoder."""

from lpm_models.encoders.audio import AudioEncoder, AudioStreamState
from lpm_models.encoders.mel import LogMel, hz_to_mel, mel_filterbank, mel_to_hz
from lpm_models.encoders.text import TextEncoder, default_model_path

__all__ = [
    "AudioEncoder",
    "AudioStreamState",
    "LogMel",
    "TextEncoder",
    "default_model_path",
    "hz_to_mel",
    "mel_filterbank",
    "mel_to_hz",
]
