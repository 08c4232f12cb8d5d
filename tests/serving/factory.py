"""Shared builders for the serving tests (no tests here): a small live Online LPM + VAE and its files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpm_models.online.engine import OnlineEngine
from lpm_models.online.model import OnlineLPM, save_online
from lpm_models.vae.model import VideoVAE
from tests.lpm_models.test_online_factory import live_online, online_cfg, small_config

CFG = small_config()


class HashPrompts:
    """Deterministic prompt embeddings for logic tests (MiniLM itself is exercised through Triton)."""

    def encode(self, prompts: list[str], device: object = None) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(sum(map(ord, prompts[0])))
        return torch.randn(1, 4, CFG.text.dim, generator=g), torch.ones(1, 4, dtype=torch.bool)


def small_vae(seed: int = 0) -> VideoVAE:
    torch.manual_seed(seed)
    vae = VideoVAE(CFG.vae).eval()
    with torch.no_grad():
        vae.set_latent_stats(torch.randn(CFG.vae.latent_channels) * 0.1, torch.rand(CFG.vae.latent_channels) + 0.5)
    return vae


def small_online(seed: int = 0) -> OnlineLPM:
    return live_online(online_cfg(chunk_latents=2), seed=seed)


def small_engine(seed: int = 0) -> OnlineEngine:
    return OnlineEngine(small_online(seed), small_vae(seed), text_encoder=HashPrompts())


def images(seed: int = 0, refs: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (40, 48, 3), dtype=np.uint8),
            [rng.integers(0, 256, (40, 48, 3), dtype=np.uint8) for _ in range(refs)])


def audio(samples: int, seed: int, level: float = 0.1) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(samples) * level).astype(np.float32)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def write_model_files(directory: Path, seed: int = 0) -> dict[str, Path]:
    """online.pt (save_online) and vae.pt (a state_dict file) of the small live model."""
    directory.mkdir(parents=True, exist_ok=True)
    online = save_online(small_online(seed), directory / "online.pt", metadata={"test": True})
    vae = directory / "vae.pt"
    torch.save({"format": "lpm-vae", "state_dict": small_vae(seed).state_dict()}, vae)
    return {"online": online, "vae": vae}


def descriptor_for(files: dict[str, Path], uris: dict[str, str], dataset_version: str = "ds-test-1") -> dict[str, Any]:
    """A ``lpm-model/1`` descriptor for files stored at ``uris``."""
    return {
        "format": "lpm-model/1", "kind": "online", "preset": "tiny",
        "files": {k: {"uri": uris[k], "sha256": sha256(p), "bytes": p.stat().st_size} for k, p in files.items()},
        "lineage": {"dataset_version": dataset_version, "teacher": "lpm-base/3"},
    }
