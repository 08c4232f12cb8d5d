"""Sharded training checkpoints (torch.distributed.checkpoint) and their consolidation.

A sharded checkpoint is a directory the orchestrator can upload as is::

    step-00001000/
      __0_0.distcp ...        DCP shards: model (FSDP2 DTensors), optimizer state, EMA shadows
      .metadata               DCP index (keys, global shapes, which rank wrote which piece)
      meta.pt                 trainer state (global step, loops, LR schedulers, configs), rank 0
      rng/rank-00000.pt ...   each rank's RNG states (torch, CUDA, numpy, python)
      COMPLETE                written last; directories without it are ignored

Resuming on the same world size restores everything exactly (weights, optimizer moments,
EMA, step, RNG); a different world size reshards weights/optimizer/EMA and re-seeds RNG.
``consolidate`` turns one into a single portable file (full weights + EMA + config + step)
that ``load_consolidated`` reads without torch.distributed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import random
import re
import shutil
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import Tensor, nn
from torch.distributed.checkpoint import FileSystemReader
from torch.distributed.checkpoint.metadata import TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.optim import Optimizer

from lpm_models.base.ema import COUNT_KEY, ShardLocalEMA
from lpm_models.base.model import BaseLPM
from lpm_models.configs import LPMConfig

log = logging.getLogger(__name__)

SHARDED_FORMAT = "lpm-sharded/1"
CONSOLIDATED_FORMAT = "lpm-base/1"
META_FILE = "meta.pt"
RNG_DIR = "rng"
COMPLETE_MARKER = "COMPLETE"
_STEP_DIR = re.compile(r"^step-(\d+)$")

T = TypeVar("T")


class ShardedTrainable(Protocol):
    """What the checkpoint-aware strategies need from a LightningModule."""

    model: nn.Module | None
    ema: ShardLocalEMA | None


# ----------------------------------------------------------------------------- configs
def dataclass_from_dict(cls: type[T], data: dict[str, Any], base: T | None = None) -> T:
    """Build dataclass ``cls`` from plain JSON/YAML data (lists become tuples, nested dicts
    nested dataclasses). With ``base``, fields missing from ``data`` keep base's values,
    so this also applies overrides. Unknown keys raise with the valid names."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls} is not a dataclass")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise KeyError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(names)}")
    hints = typing.get_type_hints(cls)
    values = {name: _coerce(hints[name], value, getattr(base, name, None)) for name, value in data.items()}
    return dataclasses.replace(base, **values) if base is not None else cls(**values)  # type: ignore[type-var]


def _coerce(hint: Any, value: Any, base: Any) -> Any:
    """``value`` shaped like type ``hint`` (dataclasses, tuples, optionals)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        options = [a for a in args if a is not type(None)]
        return _coerce(options[0], value, base) if len(options) == 1 else value
    if dataclasses.is_dataclass(hint) and isinstance(value, dict):
        return dataclass_from_dict(hint, value, base if dataclasses.is_dataclass(base) else None)
    if origin is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, None) for v in value)
        if args and len(args) == len(value):
            return tuple(_coerce(a, v, None) for a, v in zip(args, value))
        return tuple(value)
    return value


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """A dataclass config as plain data (for JSON, metadata, consolidated files)."""
    return dataclasses.asdict(cfg)


# ------------------------------------------------------------------------------- ranks
def _rank_world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain data (loadable with weights_only)."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": name, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached": float(cached)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ------------------------------------------------------------------------ save / load
def _train_state(model: nn.Module, optimizers: Sequence[Optimizer], ema: ShardLocalEMA | None) -> dict[str, Any]:
    """The DCP state: sharded model/optimizer state dicts keyed by FQN, EMA shadows."""
    state: dict[str, Any] = {"model": get_model_state_dict(model)}
    if optimizers:
        state["optim"] = get_optimizer_state_dict(model, list(optimizers))
    if ema is not None:
        state["ema"] = ema.state_dict()
    return state


def checkpoint_dir(root: str | Path, step: int) -> Path:
    return Path(root) / f"step-{step:08d}"


def is_complete(path: str | Path) -> bool:
    return (Path(path) / COMPLETE_MARKER).is_file()


def save_sharded(path: str | Path, model: nn.Module, optimizers: Sequence[Optimizer],
                 ema: ShardLocalEMA | None, meta: dict[str, Any]) -> Path:
    """Write a sharded checkpoint (collective: every rank calls it with its own shards).

    ``meta``: plain trainer state (global step, loop/scheduler states, configs) kept by rank 0.
    """
    path = Path(path)
    rank, world = _rank_world()
    if rank == 0 and path.exists():
        shutil.rmtree(path)  # overwriting a step: never mix old and new shards
    _barrier()
    (path / RNG_DIR).mkdir(parents=True, exist_ok=True)
    dcp.save(_train_state(model, optimizers, ema), checkpoint_id=path)
    torch.save(capture_rng(), path / RNG_DIR / f"rank-{rank:05d}.pt")
    _barrier()
    if rank == 0:
        torch.save({**meta, "format": SHARDED_FORMAT, "world_size": world}, path / META_FILE)
        (path / COMPLETE_MARKER).write_text(f"{SHARDED_FORMAT} world_size={world}\n")
        log.info("saved sharded checkpoint %s (%d rank(s))", path, world)
    _barrier()
    return path


def read_meta(path: str | Path) -> dict[str, Any]:
    """The rank-0 trainer state of a complete sharded checkpoint."""
    path = Path(path)
    if not is_complete(path):
        raise FileNotFoundError(f"{path} is not a complete LPM sharded checkpoint (no {COMPLETE_MARKER}); "
                                "it was interrupted while saving or is not a checkpoint directory")
    meta = torch.load(path / META_FILE, map_location="cpu", weights_only=False)  # our own trusted file
    if meta.get("format") != SHARDED_FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {SHARDED_FORMAT}")
    return meta


def load_sharded(path: str | Path, model: nn.Module, optimizers: Sequence[Optimizer],
                 ema: ShardLocalEMA | None) -> dict[str, Any]:
    """Restore a sharded checkpoint in place (collective); returns its meta dict."""
    path = Path(path)
    meta = read_meta(path)
    state = _train_state(model, optimizers, ema)
    stored = {k.split(".", 1)[0] for k in FileSystemReader(str(path)).read_metadata().state_dict_metadata}
    absent = sorted(set(state) - stored)
    if absent:
        raise KeyError(f"checkpoint {path} holds no {absent} state; it was saved without "
                       f"{' / '.join(absent)} (e.g. EMA disabled) and cannot resume this run")
    dcp.load(state, checkpoint_id=path)
    set_model_state_dict(model, state["model"])
    if optimizers:
        set_optimizer_state_dict(model, list(optimizers), state["optim"])
    if ema is not None:
        ema.load_state_dict(state["ema"])
    rank, world = _rank_world()
    rng_file = path / RNG_DIR / f"rank-{rank:05d}.pt"
    if meta["world_size"] == world and rng_file.is_file():
        restore_rng(torch.load(rng_file, map_location="cpu", weights_only=False))
    else:
        log.warning("checkpoint %s was written by %d rank(s), now %d: weights/optimizer/EMA resharded, "
                    "RNG streams not restored", path, meta["world_size"], world)
    log.info("restored %s (global step %s)", path, meta.get("global_step"))
    return meta


def latest_checkpoint(root: str | Path) -> Path | None:
    """The complete ``step-*`` checkpoint with the highest step under ``root``, if any."""
    root = Path(root)
    if not root.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and is_complete(p)]
    return max(found)[1] if found else None


def prune_checkpoints(root: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the newest ``keep_last`` complete checkpoints (call on rank 0 only)."""
    if keep_last < 1:
        return []
    found = sorted((int(m.group(1)), p) for p in Path(root).iterdir() if (m := _STEP_DIR.match(p.name)) and is_complete(p))
    removed = [p for _, p in found[:-keep_last]]
    for p in removed:
        shutil.rmtree(p)
    return removed


# ------------------------------------------------------------------------ consolidation
def _load_full(path: Path, groups: tuple[str, ...]) -> dict[str, dict[str, Tensor]]:
    """Full (unsharded) tensors of the given top-level groups, read in one process."""
    metadata = FileSystemReader(str(path)).read_metadata()
    template: dict[str, dict[str, Tensor]] = {g: {} for g in groups}
    for key, item in metadata.state_dict_metadata.items():
        group, _, name = key.partition(".")
        if group in template and isinstance(item, TensorStorageMetadata):
            template[group][name] = torch.empty(item.size, dtype=item.properties.dtype)
    dcp.load({g: t for g, t in template.items() if t}, checkpoint_id=path, no_dist=True)
    return template


def consolidate(sharded_dir: str | Path, out_file: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """One portable file from a sharded checkpoint: full weights, EMA, config, step.

    Runs in a single process without torch.distributed (any rank count wrote it).
    ``extra``: plain metadata to embed (dataset version, VAE checksum, run ids, ...).
    """
    sharded_dir, out_file = Path(sharded_dir), Path(out_file)
    meta = read_meta(sharded_dir)
    lpm = meta.get("lpm") or {}
    if "config" not in lpm:
        raise KeyError(f"{sharded_dir} meta lacks the model config ('lpm'/'config'); "
                       "was it written by the LPM training module?")
    full = _load_full(sharded_dir, ("model", "ema"))
    ema = full["ema"]
    ema_updates = int(ema.pop(COUNT_KEY)) if COUNT_KEY in ema else 0
    blob = {
        "format": CONSOLIDATED_FORMAT, "config": lpm["config"], "train": lpm.get("train", {}),
        "step": int(meta.get("global_step", 0)), "state_dict": full["model"],
        "ema_state_dict": ema or None, "ema_updates": ema_updates, "extra": dict(extra or {}),
    }
    out_file.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_file.with_name(out_file.name + ".tmp")
    torch.save(blob, tmp)
    os.replace(tmp, out_file)
    log.info("consolidated %s -> %s (%d tensors, EMA %s, step %d)", sharded_dir, out_file,
             len(full["model"]), "yes" if ema else "no", blob["step"])
    return out_file


def read_consolidated(path: str | Path) -> dict[str, Any]:
    """The consolidated blob (tensors and plain data only; safe to load)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"consolidated Base LPM file {path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != CONSOLIDATED_FORMAT:
        raise ValueError(f"{path} is not a {CONSOLIDATED_FORMAT} file")
    return blob


def load_consolidated(path: str | Path, weights: str = "ema", device: torch.device | str = "cpu") -> BaseLPM:
    """A BaseLPM (eval mode) from a consolidated file; ``weights`` is "ema" or "raw"."""
    if weights not in ("ema", "raw"):
        raise ValueError(f"weights must be 'ema' or 'raw', got {weights!r}")
    blob = read_consolidated(path)
    state = blob["state_dict"]
    if weights == "ema":
        if not blob.get("ema_state_dict"):
            raise ValueError(f"{path} has no EMA weights (trained with EMA off); use weights='raw'")
        state = {**state, **blob["ema_state_dict"]}
    model = BaseLPM(dataclass_from_dict(LPMConfig, blob["config"]))
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
