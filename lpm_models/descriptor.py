"""The registration contract: what a registered LPM model version is, as plain JSON.

Every model version in the registry (``lpm-vae``, ``lpm-base``, ``lpm-online``) carries one
descriptor at ``model/lpm_model.json`` among its artifacts. The weights themselves stay in
the object store; the descriptor names them with their SHA-256 and size, so a consumer
(the Triton repository builder, LPM-Bench) downloads and verifies exactly what was trained::

    {
      "format": "lpm-model/1",
      "kind": "online",
      "preset": "tiny",
      "files": {"online": {"uri": "s3://lpm-models/online/<run>/online.pt", "sha256": "...", "bytes": 123},
                "vae":    {"uri": "s3://lpm-models/vae/<run>/vae.pt", "sha256": "...", "bytes": 456}},
      "lineage": {"dataset_version": "...", "teacher": "lpm-base/3", ...}
    }

Files each kind must list: ``vae`` -> vae; ``base`` -> base, vae; ``online`` -> online, vae
(the streaming engine decodes latents with the VAE). Pure Python: no torch, mlflow or dagster.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FORMAT = "lpm-model/1"
ARTIFACT_DIR = "model"  # the registered version's source is <run artifact uri>/model
DESCRIPTOR_NAME = "lpm_model.json"
DESCRIPTOR_PATH = f"{ARTIFACT_DIR}/{DESCRIPTOR_NAME}"
KINDS = ("vae", "base", "online")
REQUIRED_FILES: dict[str, tuple[str, ...]] = {"vae": ("vae",), "base": ("base", "vae"), "online": ("online", "vae")}
URI_SCHEMES = ("s3://", "file://")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class DescriptorError(ValueError):
    """A descriptor is malformed or breaks the contract; the message says what to fix."""


@dataclass(frozen=True, kw_only=True)
class FileRef:
    """One weights file in the object store: where it is, its SHA-256 (hex) and its size in bytes."""

    uri: str
    sha256: str
    bytes: int

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri.startswith(URI_SCHEMES) or self.uri.endswith("/"):
            raise DescriptorError(f"file uri {self.uri!r} must be an object URI starting with one of {URI_SCHEMES}")
        if not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            raise DescriptorError(f"sha256 of {self.uri} must be 64 lower-case hex digits, got {self.sha256!r}")
        if isinstance(self.bytes, bool) or not isinstance(self.bytes, int) or self.bytes < 0:
            raise DescriptorError(f"bytes of {self.uri} must be a non-negative integer, got {self.bytes!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"uri": self.uri, "sha256": self.sha256, "bytes": self.bytes}

    @classmethod
    def from_dict(cls, data: Any, name: str = "file") -> FileRef:
        """A FileRef from its JSON object; unknown or missing keys raise DescriptorError."""
        if not isinstance(data, dict):
            raise DescriptorError(f"files.{name} must be an object with uri, sha256, bytes; got {type(data).__name__}")
        _check_keys(data, {"uri", "sha256", "bytes"}, f"files.{name}")
        return cls(uri=data["uri"], sha256=data["sha256"], bytes=data["bytes"])


@dataclass(frozen=True, kw_only=True)
class ModelDescriptor:
    """A registered LPM model version: kind, preset, weights files and lineage (all strings)."""

    format: str = FORMAT
    kind: str
    preset: str
    files: dict[str, FileRef]
    lineage: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.format != FORMAT:
            raise DescriptorError(f"descriptor format {self.format!r} is not supported; this code reads {FORMAT!r}")
        if self.kind not in KINDS:
            raise DescriptorError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not isinstance(self.preset, str) or not self.preset:
            raise DescriptorError("preset must be a non-empty string (e.g. 'tiny')")
        if not isinstance(self.files, dict) or not all(isinstance(v, FileRef) for v in self.files.values()):
            raise DescriptorError("files must map names to FileRef")
        missing = [n for n in REQUIRED_FILES[self.kind] if n not in self.files]
        if missing:
            raise DescriptorError(f"a {self.kind!r} descriptor must list files {list(REQUIRED_FILES[self.kind])}; "
                                  f"missing {missing}")
        if not isinstance(self.lineage, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                         for k, v in self.lineage.items()):
            raise DescriptorError("lineage must map strings to strings (e.g. dataset_version -> '2026...')")

    def file(self, name: str) -> FileRef:
        """The named file; KeyError lists the names this descriptor has."""
        if name not in self.files:
            raise KeyError(f"descriptor of kind {self.kind!r} has no file {name!r}; it lists {sorted(self.files)}")
        return self.files[name]

    def to_dict(self) -> dict[str, Any]:
        return {"format": self.format, "kind": self.kind, "preset": self.preset,
                "files": {name: ref.to_dict() for name, ref in sorted(self.files.items())},
                "lineage": dict(sorted(self.lineage.items()))}

    def to_json(self) -> str:
        """Stable, indented JSON (sorted keys)."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_dict(cls, data: Any) -> ModelDescriptor:
        """A validated descriptor from its JSON object; raises DescriptorError on any contract breach."""
        if not isinstance(data, dict):
            raise DescriptorError(f"a descriptor is a JSON object, got {type(data).__name__}")
        _check_keys(data, {"format", "kind", "preset", "files", "lineage"}, "descriptor")
        if data["format"] != FORMAT:
            raise DescriptorError(f"descriptor format {data['format']!r} is not supported; this code reads {FORMAT!r}")
        files = data["files"]
        if not isinstance(files, dict):
            raise DescriptorError("files must be an object mapping names to {uri, sha256, bytes}")
        return cls(format=data["format"], kind=data["kind"], preset=data["preset"],
                   files={name: FileRef.from_dict(ref, name) for name, ref in files.items()},
                   lineage=data["lineage"])

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelDescriptor:
        """Parse and validate ``lpm_model.json`` content."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise DescriptorError(f"{DESCRIPTOR_NAME} is not valid JSON: {err}") from err
        return cls.from_dict(data)


def _check_keys(data: dict[str, Any], expected: set[str], where: str) -> None:
    missing, unknown = sorted(expected - set(data)), sorted(set(data) - expected)
    if missing or unknown:
        parts = ([f"missing {missing}"] if missing else []) + ([f"unknown {unknown}"] if unknown else [])
        raise DescriptorError(f"{where}: {', '.join(parts)}; expected exactly {sorted(expected)}")
