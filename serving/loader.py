"""Build a ready ``OnlineEngine`` from verified weights files (online.pt + vae.pt)."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from lpm_models.descriptor import FileRef
from lpm_models.online.engine import OnlineEngine
from lpm_models.online.model import load_online
from lpm_models.vae.model import VideoVAE
from serving.store import ObjectStore, fetch_verified

log = logging.getLogger(__name__)

REQUIRED = ("online", "vae")


def load_engine(online_path: Path, vae_path: Path, device: str = "cpu") -> OnlineEngine:
    """An engine over ``online.pt`` (``save_online``) and ``vae.pt`` (a VAE state_dict file)."""
    model = load_online(online_path, map_location=device)
    vae = VideoVAE(replace(model.cfg.vae, pretrained_path=None))
    vae.load_pretrained(vae_path)
    return OnlineEngine(model, vae.to(device).eval())


def engine_from_files(files: dict[str, FileRef], cache_dir: Path, device: str = "cpu",
                      store: ObjectStore | None = None) -> OnlineEngine:
    """Fetch (object store -> cache), verify (SHA-256) and load; refuses mismatching files."""
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        raise ValueError(f"an Online LPM needs weights files {list(REQUIRED)}; missing {missing}")
    started = time.perf_counter()
    paths = {name: fetch_verified(files[name], cache_dir, store) for name in REQUIRED}
    engine = load_engine(paths["online"], paths["vae"], device)
    log.info("Online LPM loaded in %.1f s (%s, chunk %d samples / %d frames)", time.perf_counter() - started,
             engine.model.cfg.name, engine.chunk_samples, engine.chunk_frames)
    return engine


def warm_up(engine: OnlineEngine, with_prompt: bool) -> float:
    """Run one throwaway chunk (and load the prompt encoder if asked); returns seconds."""
    started = time.perf_counter()
    cfg = engine.model.cfg
    image = np.full((cfg.height, cfg.width, 3), 127, np.uint8)
    session = engine.start(image, prompt="neutral expression" if with_prompt else None, seed=0)
    silence = np.zeros(engine.chunk_samples, np.float32)
    engine.step(session, silence, silence)
    engine.close(session)
    if torch.cuda.is_available() and engine.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started
