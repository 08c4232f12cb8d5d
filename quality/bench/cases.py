"""LPM-Bench cases: versioned case-set specs (``casesets/<name>.yaml``) and the built, cached case sets.

    spec = load_spec("default-v1")                       # or a path to a YAML file
    cases = load_case_set(spec, cache_dir)               # built once from held-out conversations, then read
    for case in cases.cases: case.reference_image, case.audio, case.truth_video, case.prompts ...
    check_no_leakage(cases, manifest)                    # :mod:`.leakage`: nothing shared with training

A spec (``casesets/<name>.yaml``) names how cases are generated (identity bank seed, corpus seed,
durations, subsets and their selection rules); :mod:`.casebuild` turns it into cases. Subsets: ``speaking``,
``listening``, ``multi_turn``, ``text_motion``, ``character_generalisation`` (held-out identities
redrawn by :mod:`.styles`) and, only when asked (``long=True``), ``long_form``.

On disk a case set is ``<cache>/<name>-<spec digest>/``: ``index.json`` (spec, cases and their
provenance) and per case ``<n>.npz`` (reference image, both audio channels, labels) plus
``<n>.mp4`` (the ground-truth performance with the character's speech).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from quality.bench.case import CaseAudio, Prompt, prompts_of
from quality.bench.leakage import LeakageError, LeakageReport, check_no_leakage

log = logging.getLogger(__name__)

CASES_DIR = Path(__file__).with_name("casesets")
SUBSETS = ("speaking", "listening", "multi_turn", "text_motion", "character_generalisation", "long_form")
SELECTIONS = ("speaking", "listening", "multi_turn", "any")
INDEX = "index.json"
__all__ = ["BenchCase", "CaseSet", "CaseSetSpec", "LeakageError", "LeakageReport", "SubsetSpec",
           "check_no_leakage", "default_cache_dir", "load_case_set", "load_spec"]


@dataclass(frozen=True)
class SubsetSpec:
    """``count`` cases chosen by ``select``; ``styles`` redraw them, ``prompt_every_s`` plants prompts."""

    name: str
    count: int
    select: str = "any"
    styles: tuple[str, ...] = ()
    prompt_every_s: float = 0.0

    def __post_init__(self) -> None:
        from quality.bench.styles import STYLES

        if self.name not in SUBSETS:
            raise ValueError(f"unknown subset {self.name!r}; expected one of {SUBSETS}")
        if self.select not in SELECTIONS:
            raise ValueError(f"subset {self.name}: select must be one of {SELECTIONS}, got {self.select!r}")
        if self.count < 1 or (self.styles and len(self.styles) != self.count):
            raise ValueError(f"subset {self.name}: count must be >= 1 and equal the number of styles")
        unknown = [s for s in self.styles if s not in STYLES]
        if unknown:
            raise ValueError(f"subset {self.name}: unknown styles {unknown}; expected some of {STYLES}")


@dataclass(frozen=True)
class CorpusSpec:
    """Held-out conversations: corpus seed, how many, seconds each; the subsets cut from them."""

    seed: int
    conversations: int
    duration_s: float
    subsets: tuple[SubsetSpec, ...] = ()


@dataclass(frozen=True)
class IdentitySpec:
    """Held-out identity bank (``seed``, ``candidates`` chosen from ``pool``), ``count`` of them
    used, chosen far from the bank ``avoid`` = {seed, n} (the training corpus' bank) when given."""

    seed: int
    candidates: int
    pool: int
    count: int
    avoid: dict[str, int] | None = None


@dataclass(frozen=True)
class CaseSetSpec:
    """A versioned case set (see ``casesets/default-v1.yaml``); ``digest`` identifies its content."""

    name: str
    description: str
    size: int
    fps: int
    identities: IdentitySpec
    corpus: CorpusSpec
    long_form: CorpusSpec | None
    digest: str
    # > 0: frame every case like a curated clip (square crop of face_crop x the face's landmark box,
    # curation's crop_scale); 0: the renderer's whole frame (default-v1)
    face_crop: float = 0.0

    def corpora(self, long: bool) -> list[CorpusSpec]:
        """The corpora to build: the default one, plus the long-form one when ``long``."""
        return [self.corpus] + ([self.long_form] if long and self.long_form is not None else [])


def _subsets(data: dict[str, Any]) -> tuple[SubsetSpec, ...]:
    return tuple(SubsetSpec(name=name, count=int(v["count"]), select=str(v.get("select", "any")),
                            styles=tuple(v.get("styles", ())), prompt_every_s=float(v.get("prompt_every_s", 0.0)))
                 for name, v in data.items())


def _corpus(data: dict[str, Any], subsets: dict[str, Any]) -> CorpusSpec:
    return CorpusSpec(seed=int(data["seed"]), conversations=int(data["conversations"]),
                      duration_s=float(data["duration_s"]), subsets=_subsets(subsets))


def parse_spec(text: str) -> CaseSetSpec:
    """A spec from YAML text (see ``casesets/default-v1.yaml`` for the fields)."""
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "name" not in data:
        raise ValueError("a case-set spec is a YAML mapping with name, size, fps, identities, corpus, subsets")
    long = data.get("long_form")
    ids = data["identities"]
    return CaseSetSpec(
        name=str(data["name"]), description=str(data.get("description", "")).strip(), size=int(data["size"]),
        fps=int(data.get("fps", 25)),
        identities=IdentitySpec(seed=int(ids["seed"]), candidates=int(ids["candidates"]), pool=int(ids["pool"]),
                                count=int(ids["count"]), avoid=ids.get("avoid")),
        corpus=_corpus(data["corpus"], data["subsets"]),
        long_form=_corpus(long, long["subsets"]) if long else None,
        digest=hashlib.sha256(text.encode()).hexdigest(),
        face_crop=float(data.get("face_crop", 0.0)),
    )


def load_spec(name_or_path: str | Path) -> CaseSetSpec:
    """``default-v1`` (a file of ``quality/bench/casesets/``) or a path to a YAML spec."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CASES_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in CASES_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no case set {name_or_path!r} ({path}); known: {known}")
    return parse_spec(path.read_text())


def default_cache_dir() -> Path:
    """``$LPM_BENCH_CACHE``, else ``$LPM_HOME/cache``, else ``~/.cache/lpm``."""
    if os.environ.get("LPM_BENCH_CACHE"):
        return Path(os.environ["LPM_BENCH_CACHE"])
    if os.environ.get("LPM_HOME"):
        return Path(os.environ["LPM_HOME"]) / "cache"
    return Path.home() / ".cache" / "lpm"


@dataclass
class BenchCase:
    """One case: a character (reference image), two audio channels, labels, prompts, the truth video.

    Arrays live in ``<root>/<file>.npz`` and load on first use; ``truth_video`` is an MP4 of the
    ground-truth performance (with the character's speech). ``source`` records the held-out
    conversation (video id and raw-video sha256); ``audio_sha256`` the int16 PCM of both channels.
    """

    case_id: str
    subset: str
    identity_id: str
    identity_key: str
    style: str
    fps: int
    n_frames: int
    prompts: list[Prompt]
    source: dict[str, Any]
    audio_sha256: dict[str, str]
    root: Path
    file: str
    identity_embedding: list[float] = field(default_factory=list)
    _arrays: dict[str, np.ndarray] | None = field(default=None, repr=False)

    def _load(self) -> dict[str, np.ndarray]:
        if self._arrays is None:
            with np.load(self.root / f"{self.file}.npz") as z:
                self._arrays = {k: z[k] for k in z.files}
        return self._arrays

    @property
    def reference_image(self) -> np.ndarray:
        """(H, W, 3) uint8 RGB: the character the model must animate (stylised when ``style`` != photo)."""
        return self._load()["reference"]

    @property
    def audio(self) -> CaseAudio:
        arrays = self._load()
        return CaseAudio(arrays["speak"], arrays["listen"], int(arrays["sample_rate"]))

    @property
    def labels(self) -> np.ndarray:
        """(n_frames,) uint8 per-frame speak / listen / idle codes of the truth."""
        return self._load()["labels"]

    @property
    def truth_video(self) -> Path:
        return self.root / f"{self.file}.mp4"

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        data = {k: v for k, v in asdict(self).items() if k not in ("_arrays", "root")}
        data["prompts"] = [p.to_dict() for p in self.prompts]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any], root: Path) -> "BenchCase":
        fields_ = dict(data)
        fields_["prompts"] = prompts_of(data["prompts"])
        return cls(root=root, **fields_)


@dataclass
class CaseSet:
    """A built case set: its spec, its cases (long-form ones only when built with ``long``)."""

    spec: CaseSetSpec
    root: Path
    cases: list[BenchCase]
    long: bool = False
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def subsets(self) -> list[str]:
        return [s for s in SUBSETS if any(c.subset == s for c in self.cases)]

    def select(self, subsets: list[str] | None = None, limit: int | None = None) -> "CaseSet":
        """A view with only ``subsets`` (and at most ``limit`` cases)."""
        chosen = [c for c in self.cases if not subsets or c.subset in subsets][:limit]
        return CaseSet(self.spec, self.root, chosen, self.long, self.meta)

    def without(self, case_ids: "set[str] | list[str]") -> "CaseSet":
        """A view without the cases named in ``case_ids``."""
        drop = set(case_ids)
        return CaseSet(self.spec, self.root, [c for c in self.cases if c.case_id not in drop], self.long, self.meta)

    def save(self) -> Path:
        """Write ``index.json`` (arrays and videos are written while building)."""
        doc = {"name": self.spec.name, "digest": self.spec.digest, "long": self.long, "meta": self.meta,
               "cases": [c.to_dict() for c in self.cases]}
        path = self.root / INDEX
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, spec: CaseSetSpec, root: Path) -> "CaseSet":
        doc = json.loads((root / INDEX).read_text())
        if doc["digest"] != spec.digest:
            raise ValueError(f"{root} holds case set {doc['name']} of another spec digest; delete it to rebuild")
        return cls(spec, root, [BenchCase.from_dict(c, root) for c in doc["cases"]], bool(doc["long"]), doc["meta"])


def case_set_dir(spec: CaseSetSpec, cache_dir: Path, long: bool) -> Path:
    return Path(cache_dir) / "bench-cases" / f"{spec.name}-{spec.digest[:12]}{'-long' if long else ''}"


def load_case_set(spec: CaseSetSpec | str | Path, cache_dir: Path | None = None, long: bool = False) -> CaseSet:
    """The case set of ``spec``, built into ``cache_dir`` on first use (deterministic) and read after."""
    from quality.bench.casebuild import build_case_set

    spec = spec if isinstance(spec, CaseSetSpec) else load_spec(spec)
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    root = case_set_dir(spec, cache_dir, long)
    if (root / INDEX).is_file():
        cases = CaseSet.load(spec, root)
        log.info("case set %s: %d cases from %s", spec.name, len(cases.cases), root)
        return cases
    return build_case_set(spec, root, cache_dir, long)
