"""Leakage check: a case set must share no identity, source video or audio with a training dataset version.

    report = check_no_leakage(cases, manifest)                         # raises LeakageError on overlap
    report = check_no_leakage(cases, manifest, fingerprints=dataset_fingerprints(manifest, dataset_dir))

What is compared (each case against the curated dataset's manifest, ``lpm-dataset/1``):

- identities: the case's identity id / key against every clip's ``identity`` label;
- source videos: the held-out conversation's video id and raw-video sha256 against the manifest's
  ``sources`` (video id -> sha256). Every clip's frames and audio are cut from a source video, so
  no shared source means no shared clip, picture or sound;
- with the dataset's shards (:func:`dataset_fingerprints`): the sha256 of every clip's 16-bit
  ``self`` / ``other`` audio against the case audio (verbatim reuse), and the dlib distance of each
  case identity's portrait to every training identity's appearance references: below
  ``identity_threshold`` (0.4) the case shows someone training saw. The corpus' identities are
  morphs of a handful of source photos, so distinct people sit 0.45-0.9 apart (the training bank's
  closest pair ~0.5) while renders of one identity stay ~0.26 (p95 0.37) from its neutral portrait.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from lpm_models.data.dataset.manifest import Manifest
    from quality.bench.cases import BenchCase, CaseSet

log = logging.getLogger(__name__)

IDENTITY_THRESHOLD = 0.4


class LeakageError(ValueError):
    """The case set overlaps the training dataset; ``report`` says where."""

    def __init__(self, report: "LeakageReport") -> None:
        super().__init__(f"LPM-Bench cases overlap training dataset {report.dataset_version}: "
                         + "; ".join(report.overlaps[:8]) + (" ..." if len(report.overlaps) > 8 else "")
                         + f" ({len(report.cases)} case(s); --drop-leaked evaluates the others)")
        self.report = report


@dataclass
class Fingerprints:
    """What a dataset's shards reveal: per identity label the dlib embeddings of its appearance
    references (K, 128), and the sha256 of every clip's 16-bit audio channels."""

    identity_embeddings: dict[str, np.ndarray] = field(default_factory=dict)
    audio_sha256: set[str] = field(default_factory=set)


@dataclass
class LeakageReport:
    """What was compared (``checked``: counts per kind) and every overlap found."""

    dataset_version: str
    checked: dict[str, int]
    overlaps: list[str]
    nearest_identity_distance: float | None = None
    cases: list[str] = field(default_factory=list)  # ids of the cases with an overlap, sorted

    @property
    def ok(self) -> bool:
        return not self.overlaps

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_version": self.dataset_version, "ok": self.ok, "checked": self.checked,
                "overlaps": self.overlaps, "nearest_identity_distance": self.nearest_identity_distance,
                "cases": self.cases}


def _cases(cases: "CaseSet | Sequence[BenchCase]") -> list["BenchCase"]:
    return list(getattr(cases, "cases", cases))


Overlap = tuple[str, str]  # (case id, what it shares)


def _identity_overlaps(cases: list["BenchCase"], manifest: "Manifest") -> list[Overlap]:
    labels = {str(c["identity"]) for c in manifest.clips}
    return [(c.case_id, f"identity {c.identity_id} is a training identity") for c in cases
            if c.identity_id in labels or c.identity_key in labels]


def _source_overlaps(cases: list["BenchCase"], manifest: "Manifest") -> list[Overlap]:
    by_sha = {sha: vid for vid, sha in manifest.sources.items()}
    out = []
    for c in cases:
        vid, sha = c.source.get("video_id"), c.source.get("sha256")
        if vid in manifest.sources:
            out.append((c.case_id, f"source video {vid} is in the training sources"))
        elif sha in by_sha:
            out.append((c.case_id, f"source video sha256 {str(sha)[:12]}.. equals training source {by_sha[sha]}"))
    return out


def _embedding_overlaps(cases: list["BenchCase"], prints: Fingerprints,
                        threshold: float) -> tuple[list[Overlap], float | None]:
    out: list[Overlap] = []
    nearest = None
    for c in cases:
        if not c.identity_embedding:
            continue
        here = np.asarray(c.identity_embedding, dtype=np.float64)
        for label, embeddings in prints.identity_embeddings.items():
            d = float(np.linalg.norm(np.asarray(embeddings) - here, axis=-1).min())
            nearest = d if nearest is None else min(nearest, d)
            if d < threshold:
                out.append((c.case_id, f"identity {c.identity_id} is {d:.2f} (dlib) from training "
                                       f"identity {label} (< {threshold})"))
    return out, nearest


def check_no_leakage(cases: "CaseSet | Sequence[BenchCase]", manifest: "Manifest", *,
                     fingerprints: Fingerprints | None = None, identity_threshold: float = IDENTITY_THRESHOLD,
                     raise_on_overlap: bool = True) -> LeakageReport:
    """Compare the cases with a training dataset version (see the module docstring).

    Raises :class:`LeakageError` on any overlap unless ``raise_on_overlap`` is False.
    """
    items = _cases(cases)
    overlaps = _identity_overlaps(items, manifest) + _source_overlaps(items, manifest)
    checked = {"cases": len(items), "training_identities": len({c["identity"] for c in manifest.clips}),
               "training_sources": len(manifest.sources)}
    nearest = None
    if fingerprints is not None:
        audio = {c.case_id: set(c.audio_sha256.values()) & fingerprints.audio_sha256 for c in items}
        overlaps += [(cid, "audio identical to a training clip's") for cid, hit in audio.items() if hit]
        found, nearest = _embedding_overlaps(items, fingerprints, identity_threshold)
        overlaps += found
        checked |= {"training_audio_hashes": len(fingerprints.audio_sha256),
                    "training_identity_embeddings": len(fingerprints.identity_embeddings)}
    report = LeakageReport(manifest.version, checked, [f"case {cid}: {what}" for cid, what in overlaps],
                           None if nearest is None else round(nearest, 4), sorted({cid for cid, _ in overlaps}))
    if overlaps and raise_on_overlap:
        raise LeakageError(report)
    log.info("leakage check vs dataset %s: %s (%s)", manifest.version, "clean" if report.ok else "OVERLAP", checked)
    return report


def dataset_fingerprints(manifest: "Manifest", dataset_dir: Path, refs_per_identity: int = 3) -> Fingerprints:
    """Audio hashes of every clip and dlib embeddings of up to ``refs_per_identity`` appearance
    references per identity label, read from the dataset's shards in ``dataset_dir``."""
    from lpm_models.data.dataset import codec
    from lpm_models.data.dataset.shards import iter_samples
    from quality.bench.features import embed_image

    prints = Fingerprints()
    per_label: dict[str, list[np.ndarray]] = {}
    for raw in iter_samples(manifest.shard_paths(Path(dataset_dir))):
        meta = codec.decode_json(raw["json"])
        for channel in ("self.npy", "other.npy"):
            pcm = codec.decode_npy(raw[channel]).astype("<i2")
            prints.audio_sha256.add(hashlib.sha256(pcm.tobytes()).hexdigest())
        label = str(meta["identity"])
        if len(per_label.setdefault(label, [])) < refs_per_identity:
            try:
                per_label[label].append(embed_image(codec.decode_png(raw["ref_appearance.png"])))
            except ValueError:
                log.info("leakage: no dlib face in the appearance reference of %s", meta.get("clip_id"))
    prints.identity_embeddings = {k: np.stack(v) for k, v in per_label.items() if v}
    log.info("dataset %s fingerprints: %d audio hashes, %d identities embedded", manifest.version,
             len(prints.audio_sha256), len(prints.identity_embeddings))
    return prints


def training_identity_labels(manifest: "Manifest") -> Iterable[str]:
    """The identity labels of a dataset version's clips."""
    return sorted({str(c["identity"]) for c in manifest.clips})


def fingerprints_from(embeddings: Mapping[str, np.ndarray], audio: Iterable[str] = ()) -> Fingerprints:
    """Fingerprints from known embeddings and audio hashes (e.g. of a training corpus' identity bank)."""
    return Fingerprints({k: np.atleast_2d(np.asarray(v, np.float64)) for k, v in embeddings.items()}, set(audio))
