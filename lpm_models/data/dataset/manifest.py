"""The dataset manifest: shards with checksums, one row per clip, the profile, the version id.

The version id is a content hash (of shard checksums, clip rows, source checksums and the
curation config hash; not of ``created_at``), so the same curated content always gets the
same version and any change to it gets a new one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "lpm-dataset/1"
MANIFEST_NAME = "manifest.json"
VERSION_CHARS = 16  # the version id is the first 16 hex digits of the content hash


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def config_hash(config: dict[str, Any] | None) -> str:
    """Hex sha256 of a config's canonical JSON ('' for no config)."""
    if not config:
        return ""
    return hashlib.sha256(json.dumps(config, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@dataclass(frozen=True)
class ShardInfo:
    """One tar shard: file name (relative to the dataset dir), checksum, size, sample count."""

    name: str
    sha256: str
    bytes: int
    samples: int


@dataclass
class Manifest:
    """A curated dataset version. ``clips`` rows are flat JSON dicts (see FORMAT.md)."""

    version: str
    content_sha256: str
    created_at: str
    shards: list[ShardInfo]
    clips: list[dict[str, Any]]
    profile: dict[str, Any]
    sources: dict[str, str]  # source video id -> sha256 of the raw video
    config_hash: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    schema: str = MANIFEST_SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Manifest":
        if data.get("schema") != MANIFEST_SCHEMA:
            raise ValueError(f"not a {MANIFEST_SCHEMA} manifest (schema={data.get('schema')!r})")
        fields_ = dict(data)
        fields_["shards"] = [ShardInfo(**s) for s in data["shards"]]
        return cls(**fields_)

    def save(self, directory: Path) -> Path:
        """Write ``manifest.json`` into ``directory`` atomically; returns its path."""
        path = Path(directory) / MANIFEST_NAME
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), sort_keys=True, indent=1))
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: Path) -> "Manifest":
        """Read a manifest from its file or from the dataset directory holding it."""
        path = Path(path)
        if path.is_dir():
            path = path / MANIFEST_NAME
        if not path.is_file():
            raise FileNotFoundError(f"no dataset manifest at {path}; was the dataset written completely?")
        return cls.from_dict(json.loads(path.read_text()))

    def shard_paths(self, directory: Path) -> list[Path]:
        return [Path(directory) / s.name for s in self.shards]


def content_sha256(shards: list[ShardInfo], clips: list[dict[str, Any]], sources: dict[str, str],
                   config_digest: str) -> str:
    """Hex sha256 identifying a dataset's content (what the version id is cut from)."""
    document = {"schema": MANIFEST_SCHEMA, "shards": [asdict(s) for s in shards], "clips": clips,
                "sources": dict(sorted(sources.items())), "config_hash": config_digest}
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def build_profile(clips: list[dict[str, Any]]) -> dict[str, Any]:
    """Dataset summary: hours, clips, identities, frame-weighted speak/listen/idle balance, ..."""
    frames = sum(int(c["n_frames"]) for c in clips)
    seconds = sum(float(c["duration_s"]) for c in clips)
    balance = {name: (sum(float(c[f"{name}_frac"]) * int(c["n_frames"]) for c in clips) / frames if frames else 0.0)
               for name in ("speak", "listen", "idle")}
    per_identity = Counter(str(c["identity"]) for c in clips)
    return {
        "clips": len(clips),
        "hours": round(seconds / 3600.0, 6),
        "seconds": round(seconds, 3),
        "frames": frames,
        "identities": len(per_identity),
        "clips_per_identity": dict(sorted(per_identity.items())),
        "source_videos": len({c["video_id"] for c in clips}),
        "balance": {k: round(v, 6) for k, v in balance.items()},
        "mean_sync_confidence": round(sum(float(c["sync_confidence"]) for c in clips) / max(len(clips), 1), 6),
        "references": {k: sum(int(c[k]) for c in clips) for k in ("n_ref_appearance", "n_ref_pose", "n_ref_expr")},
    }


@dataclass
class ChecksumReport:
    """Outcome of :func:`verify_manifest`."""

    shards: dict[str, bool]       # shard name -> file present with the recorded size and sha256
    problems: list[str]           # one readable line per failure
    version_ok: bool              # the manifest's content hash matches its own rows

    @property
    def ok(self) -> bool:
        return self.version_ok and all(self.shards.values())


def verify_manifest(manifest: Manifest, directory: Path, count_samples: bool = False) -> ChecksumReport:
    """Recompute every shard's sha256 (and, optionally, its sample count) and the content hash."""
    directory = Path(directory)
    shards: dict[str, bool] = {}
    problems: list[str] = []
    for shard in manifest.shards:
        path = directory / shard.name
        if not path.is_file():
            shards[shard.name] = False
            problems.append(f"{shard.name}: missing from {directory}")
            continue
        size, digest = path.stat().st_size, sha256_file(path)
        ok = size == shard.bytes and digest == shard.sha256
        if not ok:
            problems.append(f"{shard.name}: sha256 {digest[:12]}.. / {size} B, manifest says "
                            f"{shard.sha256[:12]}.. / {shard.bytes} B (corrupted or replaced)")
        elif count_samples:
            from lpm_models.data.dataset.shards import count_shard_samples

            found = count_shard_samples(path)
            if found != shard.samples:
                ok = False
                problems.append(f"{shard.name}: holds {found} samples, manifest says {shard.samples}")
        shards[shard.name] = ok
    recomputed = content_sha256(manifest.shards, manifest.clips, manifest.sources, manifest.config_hash)
    version_ok = recomputed == manifest.content_sha256 and manifest.version == recomputed[:VERSION_CHARS]
    if not version_ok:
        problems.append(f"manifest content hash {recomputed[:12]}.. does not match its version "
                        f"{manifest.version} (rows, shards or sources edited after writing)")
    for line in problems:
        log.warning("dataset %s: %s", manifest.version, line)
    return ChecksumReport(shards, problems, version_ok)
