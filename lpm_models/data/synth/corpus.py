"""The synthetic two-person conversation corpus: plan, generate (in parallel), manifest.

Output layout under ``out_dir``::

    raw/<video_id>.mp4      H.264 + AAC, what curation sees
    truth/<video_id>.json   ground-truth sidecar (never read by curation)
    truth/<video_id>.voices.wav   each person's clean voice, one channel per person
    manifest.json           config, identities and one record per video (relative paths)

Everything is a function of the config: the same seed gives the same sidecars, audio and bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lpm_models.data.synth.compose import LAYOUTS, StageTimes, encode_mp4, make_layout, render_frames
from lpm_models.data.synth.performance import perform
from lpm_models.data.synth.speech import Voice, voice_for, voices_distinct
from lpm_models.data.synth.timeline import build_timeline
from lpm_models.data.synth.truth import build_truth, write_json, write_voice_tracks

if TYPE_CHECKING:
    from lpm_models.data.synth.identities import IdentityBank

log = logging.getLogger(__name__)

MANIFEST_SCHEMA = "lpm-synth-corpus/1"


@dataclass(frozen=True)
class CorpusConfig:
    """What to generate. ``size`` is the face region in pixels (split videos are 2*size wide)."""

    seed: int = 0
    n_conversations: int = 12
    duration_s: float = 25.0
    size: int = 256
    split_fraction: float = 0.5
    n_identities: int = 24
    fps: int = 25
    sample_rate: int = 16000
    workers: int = 2
    duration_jitter: float = 0.2  # each video lasts duration_s * (1 +- jitter)
    identity_seed: int = 0  # seed of the identity bank (kept apart so faces persist across corpora)
    encoder_preset: str = "superfast"

    def __post_init__(self) -> None:
        if self.n_conversations < 1:
            raise ValueError(f"n_conversations must be >= 1, got {self.n_conversations}")
        if not 0.0 <= self.split_fraction <= 1.0:
            raise ValueError(f"split_fraction must be within [0, 1], got {self.split_fraction}")
        if self.n_identities < 2:
            raise ValueError(f"n_identities must be >= 2 (two people per conversation), "
                             f"got {self.n_identities}")
        if not 0.0 <= self.duration_jitter < 1.0:
            raise ValueError(f"duration_jitter must be within [0, 1), got {self.duration_jitter}")
        if self.duration_s * (1 - self.duration_jitter) < 1.0:
            raise ValueError(f"videos must last >= 1 s; duration_s={self.duration_s} is too short")
        if self.size < 32 or self.size % 2:
            raise ValueError(f"size must be an even number of pixels >= 32, got {self.size}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass(frozen=True)
class ConversationSpec:
    """Everything one worker needs to make one video."""

    video_id: str
    seed: int
    layout: str
    on_screen: int
    identity_ids: tuple[str, str]
    voices: tuple[Voice, Voice]
    duration_s: float
    size: int
    fps: int = 25
    sample_rate: int = 16000
    encoder_preset: str = "superfast"


@dataclass(frozen=True)
class VideoRecord:
    """One manifest row. Paths are relative to the corpus directory."""

    video_id: str
    raw: str
    truth: str
    layout: str
    identity_ids: tuple[str, str]
    on_screen: tuple[int, ...]
    duration_s: float
    n_frames: int
    width: int
    height: int
    sha256: str
    truth_sha256: str


@dataclass
class CorpusManifest:
    """The corpus as written: config, identities, videos; ``times`` holds per-stage seconds."""

    config: CorpusConfig
    root: Path
    identities: list[dict[str, Any]]
    videos: list[VideoRecord]
    times: dict[str, float] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.root / "manifest.json"

    @property
    def total_duration_s(self) -> float:
        return float(sum(v.duration_s for v in self.videos))

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": MANIFEST_SCHEMA,
            "config": asdict(self.config),
            "identities": self.identities,
            "videos": [asdict(v) for v in self.videos],
            "total_duration_s": round(self.total_duration_s, 3),
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def assign_voices(identity_ids: list[str], seed: int) -> dict[str, Voice]:
    """A voice per identity, stable for a seed, each told apart from all others where possible."""
    voices: dict[str, Voice] = {}
    for identity in identity_ids:
        candidates = [voice_for(f"{identity}#{k}", seed) for k in range(64)]
        chosen = next((v for v in candidates if all(voices_distinct(v, o) for o in voices.values())),
                      candidates[0])
        voices[identity] = chosen
    return voices


def plan_corpus(config: CorpusConfig, identity_ids: list[str]) -> list[ConversationSpec]:
    """Decide every video's layout, people, voices, duration and seed (deterministic)."""
    if len(identity_ids) < 2:
        raise ValueError(f"need at least 2 identities, the bank has {len(identity_ids)}")
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, 0x5EED]))
    voices = assign_voices(identity_ids, config.identity_seed)
    n_split = int(round(config.n_conversations * config.split_fraction))
    layouts = rng.permutation(["split"] * n_split + ["single"] * (config.n_conversations - n_split))
    order: list[str] = []
    specs = []
    for index, layout in enumerate(layouts):
        if len(order) < 2:  # walk shuffled passes over the bank so everyone appears evenly
            order += [identity_ids[i] for i in rng.permutation(len(identity_ids))]
        a = order.pop(0)
        b = order.pop(next(i for i, x in enumerate(order) if x != a))
        stretch = 1 + config.duration_jitter * rng.uniform(-1, 1)
        frames = int(round(config.duration_s * stretch * config.fps))
        specs.append(ConversationSpec(
            video_id=f"synth-{config.seed:04d}-{index:04d}",
            seed=int(np.random.SeedSequence([config.seed, index]).generate_state(1)[0]),
            layout=str(layout),
            on_screen=int(rng.integers(2)),
            identity_ids=(a, b),
            voices=(voices[a], voices[b]),
            duration_s=frames / config.fps,
            size=config.size,
            fps=config.fps,
            sample_rate=config.sample_rate,
            encoder_preset=config.encoder_preset,
        ))
    return specs


def generate_conversation(
    spec: ConversationSpec, bank: "IdentityBank", out_dir: Path,
    rig_cache: dict[tuple[str, int], Any] | None = None,
) -> tuple[VideoRecord, StageTimes]:
    """Make one video and its sidecar under ``out_dir``; returns its record and stage times."""
    if spec.layout not in LAYOUTS:
        raise ValueError(f"unknown layout {spec.layout!r}; expected one of {LAYOUTS}")
    times = StageTimes()
    cpu0 = time.process_time()
    streams = np.random.SeedSequence(spec.seed).spawn(2)
    t0 = time.perf_counter()
    timeline = build_timeline(np.random.default_rng(streams[0]), spec.voices, spec.duration_s,
                              spec.sample_rate)
    times.tts = time.perf_counter() - t0
    t0 = time.perf_counter()
    performance = perform(np.random.default_rng(streams[1]), timeline, spec.fps)
    times.perform = time.perf_counter() - t0
    layout = make_layout(spec.layout, spec.size, spec.on_screen)
    cache = rig_cache if rig_cache is not None else {}
    t0 = time.perf_counter()
    rigs = []
    for identity in spec.identity_ids:
        if (identity, spec.size) not in cache:
            cache[(identity, spec.size)] = bank.rig(identity, spec.size)
        rigs.append(cache[(identity, spec.size)])
    times.extra["rig_setup"] = time.perf_counter() - t0
    raw = out_dir / "raw" / f"{spec.video_id}.mp4"
    tmp = raw.with_name(raw.stem + ".tmp.mp4")
    frames = render_frames(performance, layout, rigs, times)
    n = encode_mp4(tmp, frames, timeline.mix, layout.width, layout.height, spec.fps,
                   spec.sample_rate, times, preset=spec.encoder_preset)
    tmp.replace(raw)
    meta = {i.identity_id: _identity_meta(i) for i in bank.identities}
    truth_doc = build_truth(
        video_id=spec.video_id, seed=spec.seed, layout=layout, identity_ids=spec.identity_ids,
        voices=spec.voices, timeline=timeline, performance=performance,
        identity_meta=[meta.get(i, {}) for i in spec.identity_ids],
    )
    voices_path = out_dir / "truth" / f"{spec.video_id}.voices.wav"
    write_voice_tracks(voices_path, timeline.tracks, spec.sample_rate)
    truth_doc["voice_tracks"] = {"path": voices_path.name, "sha256": _sha256(voices_path),
                                 "channels": ["person 0", "person 1"]}
    truth = out_dir / "truth" / f"{spec.video_id}.json"
    write_json(truth, truth_doc)
    record = VideoRecord(
        video_id=spec.video_id, raw=str(raw.relative_to(out_dir)), truth=str(truth.relative_to(out_dir)),
        layout=spec.layout, identity_ids=spec.identity_ids,
        on_screen=tuple(p.person for p in layout.placements), duration_s=n / spec.fps, n_frames=n,
        width=layout.width, height=layout.height, sha256=_sha256(raw), truth_sha256=_sha256(truth),
    )
    times.extra["cpu"] = time.process_time() - cpu0
    return record, times


def _identity_meta(identity: Any) -> dict[str, Any]:
    """Sources and licences of an identity, as JSON types."""
    return {"identity_id": identity.identity_id,
            "sources": [str(s) for s in getattr(identity, "sources", ())],
            "licences": [str(s) for s in getattr(identity, "licences", ())]}


_WORKER: dict[str, Any] = {}


def _init_worker(bank: "IdentityBank") -> None:
    """Pool initializer: keep the bank (sent once per worker) and use one thread per worker."""
    _WORKER["bank"], _WORKER["rigs"] = bank, {}
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:  # rigs without OpenCV need no thread limit
        pass


def _run_in_worker(spec: ConversationSpec, out_dir: Path) -> tuple[VideoRecord, StageTimes]:
    return generate_conversation(spec, _WORKER["bank"], out_dir, _WORKER["rigs"])


def load_bank(config: CorpusConfig, cache_dir: Path | None, avoid: np.ndarray | None = None) -> "IdentityBank":
    """Build (or load from ``cache_dir``) the identity bank the config asks for.

    avoid: (K, 128) embeddings of people the corpus must not show (LPM-Bench's held-out identities).
    The plain bank is kept when none of its people is within ``AVOID_DISTANCE`` of them (so existing
    corpora stay the same); otherwise the bank is rebuilt without the candidates that are.
    """
    from lpm_models.data.synth.identities import AVOID_DISTANCE, IdentityBank, distance_to

    t0 = time.perf_counter()
    bank = IdentityBank.build(n=config.n_identities, seed=config.identity_seed, cache_dir=cache_dir)
    near = distance_to(bank.embeddings, avoid)
    if (near < AVOID_DISTANCE).any():
        log.warning("identity bank: %d identity(ies) within %.2f of identities to avoid (nearest %.3f): rebuilding "
                    "the bank without such candidates", int((near < AVOID_DISTANCE).sum()), AVOID_DISTANCE,
                    float(near.min()))
        bank = IdentityBank.build(n=config.n_identities, seed=config.identity_seed, cache_dir=cache_dir, avoid=avoid)
    log.info("identity bank: %d identities in %.1f s", len(bank.identities), time.perf_counter() - t0)
    return bank


ProgressFn = Callable[[int, int, VideoRecord], None]


def _run_specs(
    specs: list[ConversationSpec], bank: "IdentityBank", out_dir: Path, workers: int,
) -> Iterator[tuple[VideoRecord, StageTimes]]:
    """Generate ``specs`` (longest first, which balances the workers); yield as they finish."""
    ordered = sorted(specs, key=lambda s: -s.duration_s)
    workers = min(workers, len(specs))
    if workers == 1:
        rigs: dict[tuple[str, int], Any] = {}
        for spec in ordered:
            yield generate_conversation(spec, bank, out_dir, rigs)
        return
    context = multiprocessing.get_context("spawn")  # safe beside threads of the caller
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(bank,)) as pool:
        futures = [pool.submit(_run_in_worker, spec, out_dir) for spec in ordered]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise


def generate_corpus(
    config: CorpusConfig, out_dir: Path, progress: ProgressFn | None = None, *,
    bank: "IdentityBank | None" = None, cache_dir: Path | None = None,
) -> CorpusManifest:
    """Generate the whole corpus into ``out_dir`` (parallel over conversations); write the manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    bank = bank if bank is not None else load_bank(config, cache_dir)
    t_bank = time.perf_counter() - t_start
    ids = [identity.identity_id for identity in bank.identities][: config.n_identities]
    specs = plan_corpus(config, ids)
    total_s = sum(s.duration_s for s in specs)
    log.info("generating %d conversations (%.0f s of video) into %s with %d worker(s)",
             len(specs), total_s, out_dir, config.workers)
    records: list[VideoRecord] = []
    stage = StageTimes()
    t_gen = time.perf_counter()
    for record, times in _run_specs(specs, bank, out_dir, config.workers):
        records.append(record)
        for key, value in times.to_dict().items():
            stage.extra[key] = stage.extra.get(key, 0.0) + value
        done_s = sum(r.duration_s for r in records)
        rate = done_s / max(1e-9, time.perf_counter() - t_gen)
        log.info("corpus %d/%d %s: %.1fx real time, ETA %.0f s", len(records), len(specs),
                 record.video_id, rate, (total_s - done_s) / max(rate, 1e-9))
        if progress is not None:
            progress(len(records), len(specs), record)
    wall = time.perf_counter() - t_gen
    records.sort(key=lambda r: r.video_id)
    _warn_stale(out_dir, records)
    identities = [_identity_meta(i) for i in bank.identities if i.identity_id in ids]
    manifest = CorpusManifest(config, out_dir, identities, records,
                              times=stage.extra | {"bank": t_bank, "wall": wall})
    write_json(manifest.path, manifest.to_dict())
    log.info("corpus done: %d videos, %.0f s of video in %.1f s (%.1fx real time)",
             len(records), manifest.total_duration_s, wall, manifest.total_duration_s / max(wall, 1e-9))
    return manifest


def _warn_stale(out_dir: Path, records: list[VideoRecord]) -> None:
    """Log files under raw/ and truth/ that the new manifest does not list (older runs)."""
    listed = {r.raw for r in records} | {r.truth for r in records}
    listed |= {r.truth.replace(".json", ".voices.wav") for r in records}
    stale = [p for sub in ("raw", "truth") for p in sorted((out_dir / sub).glob("*"))
             if str(p.relative_to(out_dir)) not in listed]
    if stale:
        log.warning("%d file(s) in %s are not part of this corpus (e.g. %s); remove them if they "
                    "came from an older run", len(stale), out_dir, stale[0].name)


def read_manifest(out_dir: Path) -> dict[str, Any]:
    """The manifest document of a generated corpus directory."""
    path = Path(out_dir) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no corpus manifest at {path}; run `lpm corpus generate --out {out_dir}` first")
    document = json.loads(path.read_text())
    if document.get("schema") != MANIFEST_SCHEMA:
        raise ValueError(f"{path} is not a {MANIFEST_SCHEMA} manifest")
    return document
