"""Curated samples <-> WebDataset-style tar shards (plain ``tarfile``; see FORMAT.md).

A sample is a group of consecutive tar members sharing a key: ``<key>.json``, ``<key>.mp4``,
``<key>.labels.npy``, ``<key>.self.npy``, ``<key>.other.npy``, ``<key>.ref_appearance.png``,
``<key>.ref_pose_<i>.png``, ``<key>.ref_expr_<i>.png``. Members carry fixed metadata (mtime 0,
uid 0, mode 0644) so the same samples give byte-identical shards.
"""

from __future__ import annotations

import io
import logging
import os
import re
import tarfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.curation.references import ClipSpan, ReferenceImage, ReferenceSet, ReferenceSource
from lpm_models.data.curation.types import LABELS
from lpm_models.data.dataset import codec
from lpm_models.data.dataset.manifest import (
    VERSION_CHARS, Manifest, ShardInfo, build_profile, config_hash, content_sha256, sha256_file,
)

log = logging.getLogger(__name__)

CLIP_SCHEMA = "lpm-clip/1"
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class CuratedSample:
    """One curated clip, ready to shard.

    frames:      (T, H, W, 3) uint8 RGB face video at ``fps``
    labels:      (T,) uint8 per frame, codes of ``LABELS`` (0 idle, 1 speak, 2 listen)
    self_audio:  (S,) int16 the person's own speech at ``sample_rate``, S ~ T * sample_rate / fps
    other_audio: (S,) int16 the interlocutor's speech
    """

    clip: ClipSpan
    identity: str
    fps: float
    source_fps: float
    frames: np.ndarray
    labels: np.ndarray
    self_audio: np.ndarray
    other_audio: np.ndarray
    sample_rate: int
    references: ReferenceSet
    caption: str = ""
    captions: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)
    quality: dict[str, float] = field(default_factory=dict)
    sync_offset: int = 0
    sync_confidence: float = 0.0
    source_sha256: str = ""

    @property
    def key(self) -> str:
        return sample_key(self.clip.clip_id)

    @property
    def duration_s(self) -> float:
        return len(self.frames) / self.fps

    def balance(self) -> dict[str, float]:
        n = max(len(self.labels), 1)
        return {name: float(np.sum(self.labels == code)) / n for code, name in enumerate(LABELS)}

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first structural problem (shapes, dtypes, lengths)."""
        t = len(self.frames)
        problems = []
        if self.frames.ndim != 4 or self.frames.shape[-1] != 3 or self.frames.dtype != np.uint8:
            problems.append(f"frames must be (T, H, W, 3) uint8, got {self.frames.shape} {self.frames.dtype}")
        if self.labels.shape != (t,) or (len(self.labels) and int(self.labels.max()) >= len(LABELS)):
            problems.append(f"labels must be ({t},) codes < {len(LABELS)}, got {self.labels.shape}")
        expected = int(round(t * self.sample_rate / self.fps))
        for name in ("self_audio", "other_audio"):
            audio = getattr(self, name)
            if audio.ndim != 1 or audio.dtype != np.int16 or abs(len(audio) - expected) > self.sample_rate / self.fps:
                problems.append(f"{name} must be ({expected},) int16, got {audio.shape} {audio.dtype}")
        refs = self.references
        shapes = {r.image.shape for r in (refs.appearance, *refs.poses, *refs.expressions)}
        dtypes = {r.image.dtype for r in (refs.appearance, *refs.poses, *refs.expressions)}
        if len(shapes) != 1 or dtypes != {np.dtype(np.uint8)} or len(next(iter(shapes))) != 3:
            problems.append(f"reference images must all be (h, w, 3) uint8 of one size, got {sorted(shapes)}")
        if problems:
            raise ValueError(f"sample {self.clip.clip_id}: " + "; ".join(problems))

    def metadata(self) -> dict[str, Any]:
        """The ``<key>.json`` document (plain JSON types)."""
        refs = self.references
        t, h, w = self.frames.shape[:3]
        return _plain({
            "schema": CLIP_SCHEMA, "clip_id": self.clip.clip_id, "key": self.key, "identity": self.identity,
            "video_id": self.clip.video_id, "track_id": self.clip.track_id, "source_sha256": self.source_sha256,
            "start_frame": self.clip.start_frame, "end_frame": self.clip.end_frame,
            "source_fps": self.source_fps, "fps": self.fps, "n_frames": t, "width": w, "height": h,
            "duration_s": round(t / self.fps, 6), "sample_rate": self.sample_rate,
            "n_samples": len(self.self_audio), "balance": {k: round(v, 6) for k, v in self.balance().items()},
            "caption": self.caption, "captions": self.captions, "actions": self.actions, "quality": self.quality,
            "sync": {"offset_frames": self.sync_offset, "confidence": self.sync_confidence},
            "references": {"appearance": refs.appearance.source.to_dict(),
                           "poses": [r.source.to_dict() for r in refs.poses],
                           "expressions": [r.source.to_dict() for r in refs.expressions]},
        })

    def members(self) -> list[tuple[str, bytes]]:
        """(member name, bytes) in shard order."""
        self.validate()
        key = self.key
        out = [(f"{key}.json", codec.encode_json(self.metadata())),
               (f"{key}.mp4", codec.encode_video(self.frames, self.fps)),
               (f"{key}.labels.npy", codec.encode_npy(self.labels.astype(np.uint8))),
               (f"{key}.self.npy", codec.encode_npy(self.self_audio)),
               (f"{key}.other.npy", codec.encode_npy(self.other_audio)),
               (f"{key}.ref_appearance.png", codec.encode_png(self.references.appearance.image))]
        out += [(f"{key}.ref_pose_{i}.png", codec.encode_png(r.image)) for i, r in enumerate(self.references.poses)]
        out += [(f"{key}.ref_expr_{i}.png", codec.encode_png(r.image))
                for i, r in enumerate(self.references.expressions)]
        return out


def _plain(value: Any) -> Any:
    """``value`` with numpy scalars/arrays and tuples turned into JSON types (recursively)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def sample_key(clip_id: str) -> str:
    """The tar key of a clip: its id with every character outside [A-Za-z0-9_-] replaced by '_'."""
    if not clip_id:
        raise ValueError("clip_id must not be empty")
    return _KEY_UNSAFE.sub("_", clip_id)


def manifest_row(meta: dict[str, Any], shard: str) -> dict[str, Any]:
    """The flat manifest row of one sample's metadata document."""
    refs = meta["references"]
    sources = [refs["appearance"], *refs["poses"], *refs["expressions"]]
    return {
        "clip_id": meta["clip_id"], "key": meta["key"], "shard": shard, "identity": meta["identity"],
        "video_id": meta["video_id"], "track_id": meta["track_id"],
        "start_frame": meta["start_frame"], "end_frame": meta["end_frame"], "source_fps": meta["source_fps"],
        "fps": meta["fps"], "n_frames": meta["n_frames"], "duration_s": meta["duration_s"],
        "width": meta["width"], "height": meta["height"], "sample_rate": meta["sample_rate"],
        "n_samples": meta["n_samples"],
        **{f"{k}_frac": v for k, v in meta["balance"].items()},
        "sync_offset": meta["sync"]["offset_frames"], "sync_confidence": meta["sync"]["confidence"],
        "n_ref_appearance": 1 if refs.get("appearance") else 0, "n_ref_pose": len(refs["poses"]),
        "n_ref_expr": len(refs["expressions"]),
        "ref_sources": [{"kind": s["kind"], "video_id": s["video_id"], "track_id": s["track_id"],
                         "frame": s["frame"]} for s in sources],
        "caption": meta["caption"], "n_actions": len(meta["actions"]),
    }


def _add_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    tar.addfile(info, io.BytesIO(data))


class _ShardWriter:
    """Appends samples to numbered shards of ``shard_size`` samples, each renamed into place when full."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir, self.shard_size = out_dir, shard_size
        self.shards: list[ShardInfo] = []
        self.created: list[Path] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0

    @property
    def current_name(self) -> str:
        return f"shard-{len(self.shards):06d}.tar"

    def add(self, members: list[tuple[str, bytes]]) -> str:
        """Write one sample's members; returns the name of the shard it went into."""
        if self._tar is None:
            tmp = self.out_dir / f"{self.current_name}.tmp"
            self.created.append(tmp)
            self._tar = tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT)
        for name, data in members:
            _add_member(self._tar, name, data)
        shard = self.current_name
        self._count += 1
        if self._count == self.shard_size:
            self.finish()
        return shard

    def finish(self) -> None:
        """Close the open shard (if any), move it into place and record its checksum."""
        if self._tar is None:
            return
        self._tar.close()
        final = self.out_dir / self.current_name
        os.replace(self.out_dir / f"{final.name}.tmp", final)
        self.created.append(final)
        self.shards.append(ShardInfo(final.name, sha256_file(final), final.stat().st_size, self._count))
        self._tar, self._count = None, 0

    def discard(self) -> None:
        """Remove every file this writer made (after a failure)."""
        if self._tar is not None:
            self._tar.close()
        for path in self.created:
            path.unlink(missing_ok=True)


def _write_samples(samples: Iterable[CuratedSample], writer: _ShardWriter,
                   sources: dict[str, str]) -> list[dict[str, Any]]:
    """Shard every sample; returns the manifest rows (``sources`` gains the samples' checksums)."""
    rows: list[dict[str, Any]] = []
    keys: set[str] = set()
    t0 = time.perf_counter()
    for sample in samples:
        if sample.key in keys:
            raise ValueError(f"duplicate clip key {sample.key!r} (clip {sample.clip.clip_id}); clip ids must be unique")
        keys.add(sample.key)
        shard = writer.add(sample.members())
        rows.append(manifest_row(sample.metadata(), shard))
        if sample.source_sha256:
            sources.setdefault(sample.clip.video_id, sample.source_sha256)
        if len(rows) % 50 == 0:
            log.info("dataset: %d samples written (%.1f samples/s)", len(rows), len(rows) / (time.perf_counter() - t0))
    writer.finish()
    if not rows:
        raise ValueError("no samples to write: a dataset needs at least one clip")
    return rows


def write_dataset(
    samples: Iterable[CuratedSample], out_dir: Path, shard_size: int = 64, *,
    config: dict[str, Any] | None = None, source_checksums: dict[str, str] | None = None,
) -> Manifest:
    """Write samples into tar shards of ``shard_size`` samples under an empty ``out_dir``; returns the manifest.

    ``source_checksums`` (video id -> sha256 of the raw video) take precedence over checksums the
    samples carry. Duplicate clip keys are refused: they would merge two samples in WebDataset
    readers. On any failure the files written so far are removed.
    """
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty; dataset versions are immutable, write a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out_dir, shard_size)
    sources = dict(source_checksums or {})
    try:
        rows = _write_samples(samples, writer, sources)
    except BaseException:
        writer.discard()
        raise
    digest = config_hash(config)
    used = {r["video_id"] for r in rows}
    sources = {k: v for k, v in sorted(sources.items()) if k in used}
    content = content_sha256(writer.shards, rows, sources, digest)
    manifest = Manifest(version=content[:VERSION_CHARS], content_sha256=content,
                        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        shards=writer.shards, clips=rows, profile=build_profile(rows), sources=sources,
                        config_hash=digest, config=dict(config or {}))
    manifest.save(out_dir)
    log.info("dataset %s: %d clips in %d shard(s), %.2f h, written to %s", manifest.version, len(rows),
             len(writer.shards), manifest.profile["hours"], out_dir)
    return manifest


def _split_name(name: str) -> tuple[str, str]:
    base = name.rsplit("/", 1)[-1]
    key, dot, ext = base.partition(".")
    if not dot:
        raise ValueError(f"tar member {name!r} has no extension; not a dataset shard member")
    return key, ext


def iter_samples(shard_paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """Raw samples of shards in order: {'__key__', '__shard__', '<ext>': bytes, ...} per key group."""
    for path in shard_paths:
        current: dict[str, Any] | None = None
        with tarfile.open(path, "r:") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                key, ext = _split_name(member.name)
                if current is not None and current["__key__"] != key:
                    yield current
                    current = None
                if current is None:
                    current = {"__key__": key, "__shard__": Path(path).name}
                handle = tar.extractfile(member)
                current[ext] = handle.read() if handle is not None else b""
        if current is not None:
            yield current


def count_shard_samples(path: Path) -> int:
    """Number of distinct keys in one shard (headers only)."""
    with tarfile.open(path, "r:") as tar:
        return len({_split_name(m.name)[0] for m in tar if m.isfile()})


def _reference_images(raw: dict[str, Any], prefix: str, sources: list[dict[str, Any]]) -> list[ReferenceImage]:
    images = []
    for i, source in enumerate(sources):
        name = f"{prefix}_{i}.png"
        if name not in raw:
            raise ValueError(f"sample {raw['__key__']}: member {name} is missing")
        images.append(ReferenceImage(ReferenceSource.from_dict(source), codec.decode_png(raw[name])))
    return images


def decode_sample(raw: dict[str, Any]) -> CuratedSample:
    """A raw sample from :func:`iter_samples` -> :class:`CuratedSample` (video decoded)."""
    required = ("json", "mp4", "labels.npy", "self.npy", "other.npy", "ref_appearance.png")
    missing = [ext for ext in required if ext not in raw]
    if missing:
        raise ValueError(f"sample {raw.get('__key__')} in {raw.get('__shard__')} lacks members {missing}")
    meta = codec.decode_json(raw["json"])
    clip = ClipSpan(meta["clip_id"], meta["track_id"], meta["video_id"], meta["start_frame"], meta["end_frame"])
    refs = meta["references"]
    appearance = ReferenceImage(ReferenceSource.from_dict(refs["appearance"]),
                                codec.decode_png(raw["ref_appearance.png"]))
    references = ReferenceSet(clip, appearance, _reference_images(raw, "ref_pose", refs["poses"]),
                              _reference_images(raw, "ref_expr", refs["expressions"]))
    return CuratedSample(
        clip=clip, identity=meta["identity"], fps=meta["fps"], source_fps=meta["source_fps"],
        frames=codec.decode_video(raw["mp4"]), labels=codec.decode_npy(raw["labels.npy"]),
        self_audio=codec.decode_npy(raw["self.npy"]), other_audio=codec.decode_npy(raw["other.npy"]),
        sample_rate=meta["sample_rate"], references=references, caption=meta["caption"],
        captions=meta["captions"], actions=meta["actions"], quality=meta["quality"],
        sync_offset=meta["sync"]["offset_frames"], sync_confidence=meta["sync"]["confidence"],
        source_sha256=meta["source_sha256"],
    )
