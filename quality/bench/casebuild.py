"""Build a case set from its spec: held-out identities -> held-out conversations -> selected, rendered cases.

1. Identities: an identity bank with the spec's seed (never a training seed); when the spec names
   the training corpus' bank (``identities.avoid``), the ``count`` candidates farthest from every
   training identity (dlib distance) are kept, and the margin is recorded.
2. Conversations: the synthetic corpus generator with the spec's corpus seed over those
   identities only (ground truth kept: per-person face controls, voices, labels, actions).
3. Cases: each person of each conversation is a candidate (:func:`~.groundtruth.load_cases`);
   subsets pick, in spec order, the unused candidates that best fit their rule (most speaking,
   most listening, most turns, most balanced), plant prompted actions (``text_motion``) or redraw
   the character (``character_generalisation``), render the truth performance alone at the
   spec's size and store it with both audio channels, labels, prompts and provenance.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from quality.bench.case import LISTEN, SPEAK, Prompt
from quality.bench.cases import (
    CASES_DIR, BenchCase, CaseSet, CaseSetSpec, CorpusSpec, IdentitySpec, SubsetSpec, load_spec,
)
from quality.bench.groundtruth import (
    FaceFraming,
    GroundTruthCase,
    face_framing,
    load_cases,
    neutral_portrait,
    plant_prompts,
    render,
    write_video,
)
from quality.bench.styles import stylise, stylise_video

if TYPE_CHECKING:
    from lpm_models.data.synth.identities import IdentityBank

log = logging.getLogger(__name__)

PROMPT_TEXT = {"nod": "the person nods", "shake": "the person shakes their head", "smile": "the person smiles",
               "tilt": "the person tilts their head", "look_away": "the person looks away"}


def pcm_sha256(audio: np.ndarray) -> str:
    """sha256 of audio as 16-bit PCM (how datasets store it), so equal audio hashes equal."""
    pcm = np.round(np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
    return hashlib.sha256(pcm.tobytes()).hexdigest()


def held_out_identities(spec: IdentitySpec, cache_dir: Path) -> tuple["IdentityBank", dict[str, Any]]:
    """The held-out bank, reordered so its first ``spec.count`` identities are the chosen ones."""
    from lpm_models.data.synth.identities import IdentityBank, distance_to

    bank_dir = Path(cache_dir) / "identities"
    bank = IdentityBank.build(n=spec.candidates, seed=spec.seed, pool_size=spec.pool, cache_dir=bank_dir)
    if spec.count > len(bank.ids):
        raise ValueError(f"identities.count {spec.count} exceeds identities.candidates {spec.candidates}")
    margin = np.full(len(bank.ids), np.inf)
    if spec.avoid:
        avoid = IdentityBank.build(n=int(spec.avoid["n"]), seed=int(spec.avoid["seed"]), cache_dir=bank_dir)
        margin = distance_to(bank.embeddings, avoid.embeddings)  # (n,)
    order = sorted(range(len(bank.ids)), key=lambda i: (-margin[i], i))
    chosen = order[: spec.count]
    bank.identities = [bank.identities[i] for i in order]  # chosen first: the corpus uses the first `count`
    bank.embeddings = bank.embeddings[order]
    info = {"bank_seed": spec.seed, "identities": [bank.ids[k] for k in range(spec.count)],
            "min_distance_to_training_bank": None if not spec.avoid else round(float(margin[chosen].min()), 4)}
    log.info("held-out identities %s (min dlib distance to the training bank: %s)", info["identities"],
             info["min_distance_to_training_bank"])
    return bank, info


def held_out_embeddings(cache_dir: Path, specs: Sequence[str | Path] | None = None) -> np.ndarray:
    """(K, 128) dlib embeddings of every held-out identity of the case sets (default: all under
    ``casesets/``), for a training corpus to stay away from (``IdentityBank.build(avoid=...)``)."""
    from lpm_models.data.synth.identities import EMBED_DIM

    names = list(specs) if specs is not None else sorted(p.stem for p in CASES_DIR.glob("*.yaml"))
    seen: dict[tuple, np.ndarray] = {}
    for name in names:
        spec = load_spec(name).identities
        key = (spec.seed, spec.candidates, spec.pool, spec.count, json.dumps(spec.avoid, sort_keys=True))
        if key not in seen:
            bank, _ = held_out_identities(spec, cache_dir)
            seen[key] = bank.embeddings[: spec.count]
    return np.concatenate(list(seen.values())) if seen else np.zeros((0, EMBED_DIM))


def label_stats(labels: np.ndarray) -> dict[str, float]:
    """Speak / listen fractions and speak<->listen turns (idle gaps ignored) of (N,) label codes."""
    active = labels[(labels == SPEAK) | (labels == LISTEN)]
    turns = int(np.count_nonzero(np.diff(active.astype(np.int16)))) if len(active) > 1 else 0
    return {"speak": float(np.mean(labels == SPEAK)), "listen": float(np.mean(labels == LISTEN)), "turns": turns}


def _rank(candidates: Sequence[GroundTruthCase], select: str) -> list[GroundTruthCase]:
    stats = {c.case_id: label_stats(c.labels) for c in candidates}

    def key(c: GroundTruthCase) -> tuple[float, ...]:
        s = stats[c.case_id]
        balance = min(s["speak"], s["listen"])
        return {"speaking": (s["speak"],), "listening": (s["listen"],), "multi_turn": (s["turns"], balance),
                "any": (balance,)}[select]
    return sorted(candidates, key=lambda c: (*(-v for v in key(c)), c.case_id))


def _embeddable(image: np.ndarray) -> np.ndarray | None:
    from quality.bench.features import embed_image

    try:
        return embed_image(image)
    except ValueError:
        return None


class _Writer:
    """Renders, stores and describes cases into a staging directory."""

    def __init__(self, spec: CaseSetSpec, root: Path, bank: "IdentityBank", sources: dict[str, dict[str, Any]]) -> None:
        self.spec, self.root, self.bank, self.sources = spec, root, bank, sources
        self.cases: list[BenchCase] = []
        self._framings: dict[str, FaceFraming] = {}

    def framing(self, identity_id: str) -> FaceFraming | None:
        """The curated-clip framing of an identity when the spec asks for it (``face_crop`` > 0);
        computed once per identity (its portrait and its video share it)."""
        if self.spec.face_crop <= 0:
            return None
        if identity_id not in self._framings:
            self._framings[identity_id] = face_framing(self.bank, identity_id, self.spec.size, self.spec.face_crop)
        return self._framings[identity_id]

    def portrait(self, identity_id: str) -> np.ndarray:
        """The identity's neutral portrait at the case size, framed like its video."""
        size, framing = self.spec.size, self.framing(identity_id)
        if framing is None:
            return neutral_portrait(self.bank, identity_id, size)
        return framing.apply(neutral_portrait(self.bank, identity_id, framing.render_size), size)

    def render(self, identity_id: str, controls: dict[str, np.ndarray], fps: int) -> np.ndarray:
        """(N, size, size, 3) frames of the performance, framed like the portrait."""
        size, framing = self.spec.size, self.framing(identity_id)
        if framing is None:
            return render(self.bank, identity_id, controls, size, fps)
        frames = render(self.bank, identity_id, controls, framing.render_size, fps)
        return np.stack([framing.apply(frame, size) for frame in frames])

    def write(self, gt: GroundTruthCase, subset: SubsetSpec, style: str, reference: np.ndarray,
              embedding: np.ndarray, controls: dict[str, np.ndarray], events: list[Any]) -> BenchCase:
        fps = gt.fps
        file = f"{len(self.cases):03d}"
        frames = stylise_video(self.render(gt.identity_id, controls, fps), style)
        write_video(self.root / f"{file}.mp4", frames, gt.audio, fps)
        audio = gt.audio
        np.savez_compressed(self.root / f"{file}.npz", reference=reference, speak=audio.speak,
                            listen=audio.listen, labels=gt.labels, sample_rate=np.int64(audio.sample_rate))
        video_id = gt.meta["video_id"]
        prompts = [Prompt(e.action, e.start_frame, e.end_frame, PROMPT_TEXT[e.action]) for e in events]
        case = BenchCase(
            case_id=f"{subset.name}-{video_id}-p{gt.person}" + (f"-{style}" if style != "photo" else ""),
            subset=subset.name, identity_id=gt.identity_id,
            identity_key=f"heldout-s{self.spec.identities.seed}/{gt.identity_id}", style=style, fps=fps,
            n_frames=gt.n_frames, prompts=prompts, source=dict(self.sources[video_id], person=gt.person),
            audio_sha256={"speak": pcm_sha256(audio.speak),
                          "listen": pcm_sha256(audio.listen)},  # type: ignore[arg-type]
            root=self.root, file=file, identity_embedding=[round(float(v), 6) for v in embedding])
        self.cases.append(case)
        log.info("case %s: %d frames, %d prompt(s), style %s", case.case_id, case.n_frames, len(prompts), style)
        return case


def cut_cases(writer: _Writer, corpus: CorpusSpec, candidates: list[GroundTruthCase]) -> None:
    """Pick and write every subset of ``corpus`` from its candidates (each candidate used once)."""
    unused = list(candidates)
    for subset in corpus.subsets:
        ranked = _rank(unused, subset.select)
        styles = list(subset.styles) or ["photo"] * subset.count
        for style in styles:
            for gt in ranked:
                portrait = writer.portrait(gt.identity_id)
                embedding = _embeddable(portrait)
                reference = stylise(portrait, style)
                if embedding is None or (style != "photo" and _embeddable(reference) is None):
                    log.info("case candidate %s: no dlib face in its %s reference; trying the next", gt.case_id, style)
                    continue
                controls, events = gt.controls, gt.events
                if subset.prompt_every_s > 0:
                    controls, events = plant_prompts(controls, events, gt.person, gt.fps, subset.prompt_every_s,
                                                     seed=corpus.seed + gt.person)
                writer.write(gt, subset, style, reference, embedding, controls, events)
                ranked.remove(gt)
                unused.remove(gt)
                break
            else:
                raise ValueError(f"subset {subset.name}: not enough held-out candidates; raise "
                                 f"corpus.conversations (now {corpus.conversations})")


def _corpus_dir(cache_dir: Path, corpus: CorpusSpec, size: int, info: dict[str, Any]) -> Path:
    ids = hashlib.sha256(",".join(info["identities"]).encode()).hexdigest()[:8]
    return (Path(cache_dir) / "bench-corpora" /
            f"heldout-s{corpus.seed}-n{corpus.conversations}-d{corpus.duration_s:g}-p{size}-b{info['bank_seed']}-{ids}")


def build_case_set(spec: CaseSetSpec, root: Path, cache_dir: Path, long: bool = False) -> CaseSet:
    """Build the cases of ``spec`` into ``root`` (staged next to it, renamed when complete)."""
    from lpm_models.data.curation.accuracy import prepare_corpus
    from lpm_models.data.synth.corpus import CorpusConfig, read_manifest

    started = time.perf_counter()
    bank, info = held_out_identities(spec.identities, cache_dir)
    staging = root.with_name(f"{root.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    writer: _Writer | None = None
    for corpus in spec.corpora(long):
        config = CorpusConfig(seed=corpus.seed, n_conversations=corpus.conversations, duration_s=corpus.duration_s,
                              duration_jitter=0.0, size=spec.size, fps=spec.fps, split_fraction=0.5,
                              n_identities=spec.identities.count, identity_seed=spec.identities.seed, workers=1)
        corpus_dir = prepare_corpus(_corpus_dir(cache_dir, corpus, spec.size, info), config, bank)
        manifest = read_manifest(corpus_dir)
        sources = {v["video_id"]: {"video_id": v["video_id"], "sha256": v["sha256"], "corpus_seed": corpus.seed}
                   for v in manifest["videos"]}
        writer = writer or _Writer(spec, staging, bank, sources)
        writer.sources = writer.sources | sources
        cut_cases(writer, corpus, list(load_cases(corpus_dir, bank)))
    assert writer is not None
    meta = info | {"build_seconds": round(time.perf_counter() - started, 1)}
    CaseSet(spec, staging, writer.cases, long, meta).save()
    try:
        os.rename(staging, root)
    except OSError:  # built concurrently by someone else: keep theirs
        shutil.rmtree(staging, ignore_errors=True)
    log.info("case set %s built in %.0f s: %d cases in %s", spec.name, time.perf_counter() - started,
             len(writer.cases), root)
    return CaseSet.load(spec, root)
