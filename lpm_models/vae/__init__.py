"""Causal 3D-conv video VAE."""

from lpm_models.vae.metrics import psnr
from lpm_models.vae.model import VAEOutput, VideoVAE, check_state_dict

__all__ = ["VAEOutput", "VideoVAE", "check_state_dict", "psnr"]
