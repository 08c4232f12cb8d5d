"""The one typed home of the Triton model's ``config.pbtxt`` parameters.

The repository builder writes them (``to_parameters``), the adapter reads them back
(``from_parameters``); both go through these dataclasses, so a tunable has one name, one
type and one default. Weights are listed per model version (``v<N>.<file>.uri`` /
``.sha256`` / ``.bytes`` and ``v<N>.run_id``) because one config serves every loaded
version of a model side by side.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from lpm_models.descriptor import FileRef

FILE_KEYS = ("uri", "sha256", "bytes")
REGISTERED_MODEL = "registered_model"


def _parse(name: str, kind: type, raw: str) -> Any:
    try:
        if kind is bool:
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        return kind(raw)
    except ValueError as err:
        raise ValueError(f"config.pbtxt parameter {name}={raw!r} is not a valid {kind.__name__}") from err


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True)
class ServingParams:
    """Tunables of a served Online LPM (``config.pbtxt`` ``parameters``).

    idle_timeout_s: a session idle this long is evicted (Triton's
    ``max_sequence_idle_microseconds`` is set to the same value).
    threads: torch intra-op threads per model instance.
    frames_per_response: frames per decoupled response (0: the whole chunk in one).
    warmup: generate one throwaway chunk at load, so the first session is not slow.
    preload_text_encoder: load the prompt encoder at load instead of on the first prompt.
    cache_dir: local weights cache ('' = ``serving.store.default_cache_dir()``).
    eviction_interval_s: how often idle sessions are looked for.
    """

    idle_timeout_s: float = 30.0
    threads: int = 1
    device: str = "cpu"
    frames_per_response: int = 0
    warmup: bool = True
    preload_text_encoder: bool = True
    cache_dir: str = ""
    eviction_interval_s: float = 1.0

    def __post_init__(self) -> None:
        if self.idle_timeout_s <= 0:
            raise ValueError(f"idle_timeout_s must be > 0, got {self.idle_timeout_s}")
        if self.threads < 1:
            raise ValueError(f"threads must be >= 1, got {self.threads}")
        if self.frames_per_response < 0:
            raise ValueError(f"frames_per_response must be >= 0, got {self.frames_per_response}")
        if self.eviction_interval_s <= 0:
            raise ValueError(f"eviction_interval_s must be > 0, got {self.eviction_interval_s}")

    def to_parameters(self) -> dict[str, str]:
        return {f.name: _format(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_parameters(cls, params: Mapping[str, str]) -> ServingParams:
        """Parse the tunables (missing ones take their defaults; weights keys are ignored)."""
        hints = typing.get_type_hints(cls)
        return cls(**{f.name: _parse(f.name, hints[f.name], params[f.name]) for f in fields(cls) if f.name in params})


@dataclass(frozen=True)
class VersionFiles:
    """The weights files (and MLflow run) behind one served model version."""

    version: int
    files: dict[str, FileRef]
    run_id: str

    def to_parameters(self) -> dict[str, str]:
        out = {f"v{self.version}.run_id": self.run_id}
        for name, ref in sorted(self.files.items()):
            out.update({f"v{self.version}.{name}.{key}": str(getattr(ref, key)) for key in FILE_KEYS})
        return out

    @classmethod
    def from_parameters(cls, params: Mapping[str, str], version: int) -> VersionFiles:
        """The files of ``version``; raises ValueError naming what is missing."""
        prefix = f"v{version}."
        names = sorted({k[len(prefix):].split(".")[0] for k in params if k.startswith(prefix) and k.count(".") == 2})
        if not names:
            listed = sorted({k.split(".")[0] for k in params if k.startswith("v") and "." in k})
            raise ValueError(f"config.pbtxt lists no weights for version {version} (it has {listed or 'none'}); "
                             "rebuild the repository with serving.repository.build_model")
        files = {}
        for name in names:
            missing = [f"{prefix}{name}.{key}" for key in FILE_KEYS if f"{prefix}{name}.{key}" not in params]
            if missing:
                raise ValueError(f"config.pbtxt is missing parameters {missing}")
            files[name] = FileRef(uri=params[f"{prefix}{name}.uri"], sha256=params[f"{prefix}{name}.sha256"],
                                  bytes=_parse(f"{prefix}{name}.bytes", int, params[f"{prefix}{name}.bytes"]))
        return cls(version=version, files=files, run_id=params.get(f"{prefix}run_id", ""))


def config_parameters(model_config: Mapping[str, Any]) -> dict[str, str]:
    """``{"k": {"string_value": "v"}}`` of a Triton model config (JSON form) -> ``{"k": "v"}``."""
    raw = model_config.get("parameters") or {}
    return {key: value.get("string_value", "") if isinstance(value, Mapping) else str(value)
            for key, value in raw.items()}
