"""The Online LPM module (audio encoder + causal backbone + optional refiner) and its file format.

Parameter names follow the Base LPM (``audio_encoder.*``, ``dit.*``), so a student is
initialised from a teacher with one ``load_state_dict``; the refiner is a second causal DiT
initialised from the same weights. ``save_online`` writes one consolidated, portable file
(configs as plain data + weights); ``load_online`` rebuilds the module from it alone.
"""

from __future__ import annotations

import logging
import types
import typing
from dataclasses import asdict, fields, is_dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lpm_models.base.model import BaseLPM
from lpm_models.configs import LPMConfig
from lpm_models.encoders.audio import AudioEncoder
from lpm_models.online.causal import CausalDiT
from lpm_models.online.config import OnlineConfig

log = logging.getLogger(__name__)

FILE_FORMAT = "lpm-online"
FILE_VERSION = 1


class OnlineLPM(nn.Module):
    """Streaming audio encoder + causal few-step backbone (+ one-step refiner)."""

    def __init__(self, cfg: LPMConfig, online: OnlineConfig, with_refiner: bool | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.online = online
        self.audio_encoder = AudioEncoder(cfg.audio)
        self.dit = CausalDiT(cfg.dit, online)
        has_refiner = online.refiner if with_refiner is None else with_refiner
        self.refiner = CausalDiT(cfg.dit, online) if has_refiner else None

    @classmethod
    def from_base(cls, base: BaseLPM, online: OnlineConfig, with_refiner: bool | None = None) -> OnlineLPM:
        """A student initialised from a Base LPM teacher (audio encoder, backbone and refiner)."""
        model = cls(base.cfg, online, with_refiner)
        model.audio_encoder.load_state_dict(base.audio_encoder.state_dict())
        model.dit.load_state_dict(base.dit.state_dict())
        if model.refiner is not None:
            model.refiner.load_state_dict(base.dit.state_dict())
        return model.to(next(base.parameters()).device)

    def configure(self, online: OnlineConfig) -> None:
        """Switch streaming settings (window, steps, refiner use) without retraining.

        The chunk length is part of what the model learned and cannot change; using the
        refiner needs a model trained with one.
        """
        if online.chunk_latents != self.online.chunk_latents:
            raise ValueError(f"this model was distilled for {self.online.chunk_latents}-latent chunks, "
                             f"not {online.chunk_latents}")
        if online.refiner and self.refiner is None:
            raise ValueError("this model has no refiner; set refiner=False")
        self.online = online
        self.dit.online = online
        if self.refiner is not None:
            self.refiner.online = online

    def init_refiner_from_backbone(self) -> None:
        """Create (or reset) the refiner as a copy of the current backbone (refiner distillation start)."""
        refiner = CausalDiT(self.cfg.dit, self.online).to(next(self.dit.parameters()).device)
        refiner.load_state_dict(self.dit.state_dict())
        self.refiner = refiner


# ---------------------------------------------------------------- config files
def _from_plain(hint: Any, value: Any) -> Any:
    """Rebuild a value of a (possibly nested / optional / tuple) dataclass field type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if is_dataclass(hint) and isinstance(value, dict):
        return dataclass_from_dict(hint, value)  # type: ignore[arg-type]
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if args else Any
        return tuple(_from_plain(inner, v) for v in value)
    return value


def dataclass_from_dict(cls: type, data: dict[str, Any]) -> Any:
    """Inverse of ``dataclasses.asdict`` for config dataclasses (nested, tuples restored)."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; the file is from another code version")
    return cls(**{k: _from_plain(hints[k], v) for k, v in data.items()})


def save_online(model: OnlineLPM, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write a consolidated Online LPM file (configs, weights, free-form JSON-able metadata)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    blob = {
        "format": FILE_FORMAT,
        "version": FILE_VERSION,
        "config": asdict(model.cfg),
        "online": asdict(model.online),
        "has_refiner": model.refiner is not None,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": dict(metadata or {}),
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(blob, tmp)
    tmp.replace(path)
    log.info("saved Online LPM to %s (%d tensors)", path, len(blob["state_dict"]))
    return path


def read_online_file(path: str | Path) -> dict[str, Any]:
    """The raw contents of an Online LPM file, checked for format and version."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Online LPM file {path} does not exist")
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FILE_FORMAT:
        raise ValueError(f"{path} is not an Online LPM file (expected format {FILE_FORMAT!r}); "
                         "write one with lpm_models.online.save_online")
    if blob.get("version") != FILE_VERSION:
        raise ValueError(f"{path} has Online LPM file version {blob.get('version')}, this code reads {FILE_VERSION}")
    return blob


def load_online(path: str | Path, map_location: str | torch.device = "cpu", **online_overrides: Any) -> OnlineLPM:
    """Rebuild an ``OnlineLPM`` (eval mode) from a file written by ``save_online``.

    online_overrides: streaming settings to change at load time (e.g. ``refiner=False``,
    ``window_chunks=4``); see ``OnlineLPM.configure``.
    """
    blob = read_online_file(path)
    cfg = dataclass_from_dict(LPMConfig, blob["config"])
    online = OnlineConfig.from_dict(blob["online"])
    model = OnlineLPM(cfg, online, with_refiner=bool(blob["has_refiner"]))
    model.load_state_dict(blob["state_dict"], strict=True)
    if online_overrides:
        model.configure(replace(online, **online_overrides))
    return model.to(map_location).eval()
