"""The identity bank: distinct synthetic people for the conversation corpus.

``IdentityBank.build`` normalises the source photos, composes a pool of candidate identities
from seeded recipes (see ``face_edits``), renders each one's neutral frame, embeds it with
dlib's 128-d identity encoder, and keeps the ``n`` candidates with the largest minimum
pairwise distance. The result is deterministic for a seed and source list and is cached as
npz + json, so later builds only read files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from lpm_models.data.synth import face_geometry as fg
from lpm_models.data.synth.face_edits import Recipe, compose, sample_recipe
from lpm_models.data.synth.face_embed import SAME_PERSON_THRESHOLD, FaceEmbedder, pairwise_distances
from lpm_models.data.synth.face_sources import (
    SOURCES, FaceMesher, PersonSegmenter, available_sources, load_source, normalise,
)
from lpm_models.data.synth.faces import FaceControls, FaceRig

log = logging.getLogger(__name__)

BANK_VERSION = 2
EMBED_SIZE = 256  # neutral renders are embedded at this size
EMBED_DIM = 128  # dlib identity descriptor
POOL_PER_IDENTITY = 12  # default candidate pool size per requested identity
# dlib distance a bank keeps from the identities it must avoid (e.g. LPM-Bench's held-out people): above
# the bench's leakage threshold (0.4) with a margin for how far renders of one person stray from its neutral
AVOID_DISTANCE = 0.45


@dataclass(frozen=True)
class Identity:
    """One synthetic person of the bank."""

    identity_id: str             # e.g. "id007"
    sources: tuple[str, ...]     # names of the source photos it is morphed from
    licences: tuple[str, ...]    # the licence of each source, same order
    seed: int                    # bank seed
    candidate: int               # index in the candidate pool; (seed, candidate) seeds the recipe
    recipe: dict = field(default_factory=dict, hash=False, compare=False)


def _points_and_kinds(face: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    extra, kinds = fg.scaffold(face[:, :2], size)
    points = np.vstack([face, np.column_stack([extra, np.zeros(len(extra))])])
    return points, np.concatenate([np.full(fg.MESH_POINTS, fg.KIND_FACE), kinds])


def select_max_min(dist: np.ndarray, n: int, rounds: int = 4) -> list[int]:
    """Indices of ``n`` items with a large minimum pairwise distance (greedy + swaps)."""
    m = len(dist)
    if n > m:
        raise ValueError(f"cannot select {n} identities from a pool of {m}; raise pool_size")
    chosen = [int(np.argmax(dist.mean(axis=1)))]
    while len(chosen) < n:
        score = dist[:, chosen].min(axis=1)
        score[chosen] = -1.0
        chosen.append(int(np.argmax(score)))
    for _ in range(rounds):
        improved = False
        for slot in range(n):
            rest = chosen[:slot] + chosen[slot + 1:]
            current = min(dist[np.ix_(chosen, chosen)][np.triu_indices(n, 1)])
            to_rest = dist[:, rest].min(axis=1)
            to_rest[chosen] = -1.0
            best = int(np.argmax(to_rest))
            inner = dist[np.ix_(rest, rest)][np.triu_indices(n - 1, 1)]
            new_min = min(float(to_rest[best]), float(inner.min()) if inner.size else np.inf)
            if new_min > current + 1e-9:
                chosen[slot] = best
                improved = True
        if not improved:
            break
    return chosen


def distance_to(embeddings: np.ndarray, others: np.ndarray | None) -> np.ndarray:
    """(N,) distance of each embedding to the nearest row of ``others`` (inf when there is none)."""
    emb = np.asarray(embeddings, dtype=np.float64).reshape(-1, EMBED_DIM)
    if others is None or len(others) == 0:
        return np.full(len(emb), np.inf)
    other = np.asarray(others, dtype=np.float64).reshape(-1, EMBED_DIM)
    return np.linalg.norm(emb[:, None] - other[None], axis=-1).min(axis=1)


def _cache_key(n: int, seed: int, pool_size: int, sources: Sequence[str],
               avoid: np.ndarray | None = None, avoid_distance: float = AVOID_DISTANCE) -> str:
    versions = {p: metadata.version(p) for p in ("mediapipe", "dlib-bin", "opencv-contrib-python")
                if _has_dist(p)}
    doc = {"v": BANK_VERSION, "n": n, "seed": seed, "pool": pool_size, "sources": list(sources), "libs": versions}
    if avoid is not None and len(avoid):
        doc["avoid"] = [hashlib.sha256(np.round(np.asarray(avoid, np.float64), 6).tobytes()).hexdigest(), avoid_distance]
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _has_dist(name: str) -> bool:
    try:
        metadata.version(name)
    except metadata.PackageNotFoundError:
        return False
    return True


class IdentityBank:
    """Identities with their neutral portraits, rig points and identity embeddings."""

    def __init__(self, identities: list[Identity], textures: dict[str, np.ndarray], points: dict[str, np.ndarray],
                 embeddings: np.ndarray, info: dict | None = None) -> None:
        self.identities = identities
        self._textures = textures
        self._points = points
        self.embeddings = np.asarray(embeddings, dtype=np.float64)  # (n, 128), identities' order
        self.info = dict(info or {})

    @property
    def ids(self) -> list[str]:
        return [i.identity_id for i in self.identities]

    def identity(self, identity_id: str) -> Identity:
        for ident in self.identities:
            if ident.identity_id == identity_id:
                return ident
        raise KeyError(f"unknown identity {identity_id!r}; the bank has {self.ids}")

    def rig(self, identity_id: str, size: int = 256) -> FaceRig:
        """An animation rig of one identity rendering ``size`` x ``size`` frames."""
        self.identity(identity_id)
        face = self._points[identity_id]
        points, kinds = _points_and_kinds(face, self._textures[identity_id].shape[0])
        return FaceRig(self._textures[identity_id], points, kinds, size)

    def distance_report(self) -> dict:
        """Pairwise dlib distances between the identities' neutral renders."""
        n = len(self.identities)
        d = pairwise_distances(self.embeddings)[np.triu_indices(n, 1)]
        if d.size == 0:
            return {"n": n, "pairs": 0}
        return {"n": n, "pairs": int(d.size), "min": float(d.min()), "p10": float(np.percentile(d, 10)),
                "median": float(np.median(d)), "max": float(d.max()),
                "fraction_above_0.6": float((d > SAME_PERSON_THRESHOLD).mean())}

    @classmethod
    def build(cls, n: int = 24, seed: int = 0, cache_dir: Path | None = None, pool_size: int | None = None,
              sources: Sequence[str] | None = None, avoid: np.ndarray | None = None,
              avoid_distance: float = AVOID_DISTANCE) -> "IdentityBank":
        """Build (or load from ``cache_dir``) ``n`` maximally distinct identities.

        avoid: (K, 128) dlib embeddings of people the bank must not resemble: candidates closer than
        ``avoid_distance`` to any of them are left out of the selection (recorded in ``info``).
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        names = list(sources) if sources is not None else available_sources()
        unknown = [s for s in names if s not in SOURCES]
        if unknown:
            raise KeyError(f"unknown face sources {unknown}; registered: {sorted(SOURCES)}")
        pool = int(pool_size) if pool_size is not None else max(POOL_PER_IDENTITY * n, 16)
        key = _cache_key(n, seed, pool, names, avoid, avoid_distance)
        if cache_dir is not None:
            path = Path(cache_dir) / f"identity_bank-{key}"
            if path.with_suffix(".npz").is_file() and path.with_suffix(".json").is_file():
                log.info("loading identity bank from %s", path.with_suffix(".npz"))
                return cls.load(path)
        bank = _build(n, seed, pool, names, avoid, avoid_distance)
        bank.info["cache_key"] = key
        if cache_dir is not None:
            bank.save(Path(cache_dir) / f"identity_bank-{key}")
        return bank

    def save(self, stem: Path) -> None:
        """Write ``stem``.npz (arrays) and ``stem``.json (identities, provenance)."""
        stem.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, np.ndarray] = {"embeddings": self.embeddings}
        for ident in self.identities:
            arrays[f"texture_{ident.identity_id}"] = self._textures[ident.identity_id]
            arrays[f"points_{ident.identity_id}"] = self._points[ident.identity_id]
        tmp = stem.with_name(stem.name + ".tmp.npz")
        np.savez_compressed(tmp, **arrays)
        tmp.replace(stem.with_suffix(".npz"))
        meta = {"identities": [{"identity_id": i.identity_id, "sources": list(i.sources), "licences": list(i.licences),
                                "seed": i.seed, "candidate": i.candidate, "recipe": i.recipe}
                               for i in self.identities], "info": self.info}
        stem.with_suffix(".json").write_text(json.dumps(meta, indent=1))

    @classmethod
    def load(cls, stem: Path) -> "IdentityBank":
        """Read a bank written by ``save``."""
        meta = json.loads(stem.with_suffix(".json").read_text())
        identities = [Identity(identity_id=d["identity_id"], sources=tuple(d["sources"]),
                               licences=tuple(d["licences"]), seed=int(d["seed"]), candidate=int(d["candidate"]),
                               recipe=d["recipe"]) for d in meta["identities"]]
        with np.load(stem.with_suffix(".npz")) as z:
            textures = {i.identity_id: z[f"texture_{i.identity_id}"] for i in identities}
            points = {i.identity_id: z[f"points_{i.identity_id}"] for i in identities}
            embeddings = z["embeddings"]
        return cls(identities, textures, points, embeddings, meta.get("info", {}))


def _embed_neutral(rig: FaceRig, embedder: FaceEmbedder, mesher: FaceMesher) -> np.ndarray | None:
    frame = rig.render(FaceControls())
    if mesher(frame) is None:
        return None
    box = embedder.detect(frame)
    if box is None:
        face = rig.points(FaceControls())[: fg.MESH_POINTS]
        x0, y0, x1, y1 = fg.face_box(face)
        box = (x0, y0 + 0.25 * (y1 - y0), x1, y1)
    return embedder.embed(frame, box)


def _build(n: int, seed: int, pool: int, names: list[str], avoid: np.ndarray | None = None,
           avoid_distance: float = AVOID_DISTANCE) -> IdentityBank:
    start = time.perf_counter()
    mesher, segmenter, embedder = FaceMesher(), PersonSegmenter(), FaceEmbedder()
    try:
        faces = {name: normalise(name, load_source(name), mesher, segmenter) for name in names}
        perm = fg.mirror_permutation(next(iter(faces.values())).points[:, :2])
        framing = {name: f.frames_person for name, f in faces.items()}
        recipes: list[Recipe] = []
        candidates: list[int] = []
        made: list[tuple[np.ndarray, np.ndarray]] = []
        embeddings: list[np.ndarray] = []
        for k in range(pool):
            recipe = sample_recipe(np.random.default_rng([seed, k]), framing)
            image, face = compose(recipe, faces, perm)
            points, kinds = _points_and_kinds(face, image.shape[0])
            emb = _embed_neutral(FaceRig(image, points, kinds, EMBED_SIZE), embedder, mesher)
            if emb is not None:
                recipes.append(recipe)
                candidates.append(k)
                made.append((image, face))
                embeddings.append(emb)
            if (k + 1) % max(1, pool // 10) == 0 or k + 1 == pool:
                rate = (k + 1) / (time.perf_counter() - start)
                log.info("identity pool %d/%d (%d usable), %.1f candidates/s, ETA %.0f s",
                         k + 1, pool, len(recipes), rate, (pool - k - 1) / rate)
    finally:
        mesher.close()
        segmenter.close()
    emb = np.stack(embeddings) if embeddings else np.zeros((0, EMBED_DIM))
    allowed = np.flatnonzero(distance_to(emb, avoid) >= avoid_distance)
    if len(allowed) < n:
        raise RuntimeError(f"only {len(allowed)} of {pool} candidates had a detectable face "
                           f"({len(recipes) - len(allowed)} more left out as too close to avoided identities); "
                           "raise pool_size")
    chosen = [int(allowed[i]) for i in select_max_min(pairwise_distances(emb[allowed]), n)]
    identities, textures, points = [], {}, {}
    for rank, idx in enumerate(chosen):
        ident_id = f"id{rank:03d}"
        recipe = recipes[idx]
        identities.append(Identity(identity_id=ident_id, sources=recipe.sources,
                                   licences=tuple(SOURCES[s].licence for s in recipe.sources), seed=seed,
                                   candidate=candidates[idx],
                                   recipe=json.loads(json.dumps(recipe.to_dict()))))
        textures[ident_id], points[ident_id] = made[idx]
    info = {"n": n, "seed": seed, "pool_size": pool, "usable_candidates": len(recipes), "sources": names,
            "avoided": {"identities": 0 if avoid is None else len(avoid), "distance": avoid_distance,
                        "candidates_left_out": len(recipes) - len(allowed)},
            "licences": {s: SOURCES[s].licence for s in names}, "build_seconds": time.perf_counter() - start}
    bank = IdentityBank(identities, textures, points, emb[chosen], info)
    bank.info["distances"] = bank.distance_report()
    log.info("identity bank: %d identities from %d candidates in %.1f s; distances %s", n, len(recipes),
             bank.info["build_seconds"], bank.info["distances"])
    return bank


def write_contact_sheet(bank: IdentityBank, path: Path, tile: int = 160, columns: int = 6,
                        controls: FaceControls | None = None) -> Path:
    """PNG grid of every identity rendered at ``tile`` px under ``controls`` (neutral by default)."""
    ctl = controls or FaceControls()
    tiles = []
    for ident in bank.identities:
        frame = bank.rig(ident.identity_id, tile).render(ctl)
        label = f"{ident.identity_id} {'+'.join(s[:5] for s in ident.sources)}"
        cv2.putText(frame, label, (4, tile - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.32 * tile / 160, (255, 255, 255), 1,
                    cv2.LINE_AA)
        tiles.append(frame)
    rows = (len(tiles) + columns - 1) // columns
    sheet = np.zeros((rows * tile, columns * tile, 3), dtype=np.uint8)
    for i, frame in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = frame
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write contact sheet to {path}")
    return path
