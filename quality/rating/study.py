"""A rating study: which pairs of videos raters judge, on which dimensions, and the JSON file that
describes it.

Study file (``lpm rate make-study`` writes one)::

    {
      "id": "online-v3-vs-v2",                      # the study id reports are asked by
      "title": "Online LPM v3 vs v2",               # optional
      "systems": {"a": "lpm-online/3", "b": "lpm-online/2"},   # never shown to raters
      "dimensions": ["motion_dynamics", "overall"], # optional, default: all of DIMENSIONS
      "pairs": [{"case": "speak_0001", "a": "a/speak_0001.mp4", "b": "b/speak_0001.mp4",
                 "prompt": "nods twice"}]           # prompt optional (shown for text control)
    }

Video references are local paths (relative ones are resolved against the study file's folder),
``file://`` URLs, or ``http(s)://`` URLs (the rating server proxies them so raters never see them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

log = logging.getLogger(__name__)

# key -> label shown to raters (the LPM-Bench dimensions, plus overall quality)
DIMENSIONS: dict[str, str] = {
    "motion_dynamics": "Motion dynamics",
    "identity_consistency": "Identity consistency",
    "text_controllability": "Text controllability",
    "audio_video_sync": "Audio-video sync",
    "overall": "Overall",
}
STUDY_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
REMOTE_SCHEMES = ("http", "https")


@dataclass(frozen=True)
class Pair:
    """One case: the video of system A and of system B (resolved path or http(s) URL)."""

    case_id: str
    video_a: str
    video_b: str
    prompt: str | None = None

    def video(self, system: str) -> str:
        """The video reference of system ``"a"`` or ``"b"``."""
        if system not in ("a", "b"):
            raise ValueError(f"system must be 'a' or 'b', got {system!r}")
        return self.video_a if system == "a" else self.video_b


@dataclass(frozen=True)
class Study:
    """A validated study; ``pairs`` hold resolved video references."""

    id: str
    system_a: str
    system_b: str
    pairs: tuple[Pair, ...]
    dimensions: tuple[str, ...] = tuple(DIMENSIONS)
    title: str | None = None

    def __post_init__(self) -> None:
        if not STUDY_ID_PATTERN.match(self.id):
            raise ValueError(f"study id {self.id!r} must be 1-128 characters of letters, digits, '.', '_', '-'")
        if not self.system_a.strip() or not self.system_b.strip():
            raise ValueError("a study needs the names of both systems ('systems': {'a': ..., 'b': ...})")
        if not self.pairs:
            raise ValueError(f"study {self.id!r} has no pairs")
        unknown = [d for d in self.dimensions if d not in DIMENSIONS]
        if unknown or not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise ValueError(f"study dimensions must be distinct names out of {', '.join(DIMENSIONS)}; "
                             f"got {list(self.dimensions)}")
        cases = [p.case_id for p in self.pairs]
        duplicates = sorted({c for c in cases if cases.count(c) > 1})
        if duplicates:
            raise ValueError(f"study {self.id!r} lists these cases more than once: {', '.join(duplicates)}")

    def to_json(self) -> dict[str, Any]:
        """The study as its JSON document (video references as resolved)."""
        doc: dict[str, Any] = {"id": self.id}
        if self.title:
            doc["title"] = self.title
        doc["systems"] = {"a": self.system_a, "b": self.system_b}
        doc["dimensions"] = list(self.dimensions)
        doc["pairs"] = [
            {"case": p.case_id, "a": p.video_a, "b": p.video_b, **({"prompt": p.prompt} if p.prompt else {})}
            for p in self.pairs
        ]
        return doc

    def sha256(self) -> str:
        """Digest of the canonical JSON document (what the catalog records)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def is_remote(reference: str) -> bool:
    """Whether a video reference is an http(s) URL."""
    return urlparse(reference).scheme in REMOTE_SCHEMES


def _resolve_video(reference: Any, base_dir: Path, where: str) -> str:
    if not isinstance(reference, str) or not reference.strip():
        raise ValueError(f"{where}: a video reference must be a non-empty string, got {reference!r}")
    scheme = urlparse(reference).scheme
    if scheme in REMOTE_SCHEMES:
        return reference
    if scheme == "file":
        path = Path(unquote(urlparse(reference).path))
    elif scheme and len(scheme) > 1:  # a one-letter scheme is a Windows drive, not a URL
        raise ValueError(f"{where}: unsupported video URL {reference!r}; use a local path, file:// or http(s)://")
    else:
        path = Path(reference).expanduser()
    path = path if path.is_absolute() else base_dir / path
    if not path.is_file():
        raise FileNotFoundError(f"{where}: video {path} does not exist")
    return str(path.resolve())


def _pair(entry: Any, index: int, base_dir: Path) -> Pair:
    where = f"pairs[{index}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected an object with case, a and b, got {type(entry).__name__}")
    missing = [k for k in ("case", "a", "b") if k not in entry]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}")
    case_id = entry["case"]
    if not isinstance(case_id, str) or not case_id.strip() or len(case_id) > 255:
        raise ValueError(f"{where}: case must be a non-empty string of at most 255 characters")
    prompt = entry.get("prompt")
    if prompt is not None and not isinstance(prompt, str):
        raise ValueError(f"{where}: prompt must be a string")
    where = f"{where} (case {case_id})"
    return Pair(case_id, _resolve_video(entry["a"], base_dir, where), _resolve_video(entry["b"], base_dir, where),
                prompt or None)


def study_from_json(doc: Any, base_dir: Path) -> Study:
    """Validate a study document; relative video paths are resolved against ``base_dir``."""
    if not isinstance(doc, dict):
        raise ValueError("a study file must hold a JSON object")
    systems = doc.get("systems")
    if not isinstance(systems, dict) or not all(isinstance(systems.get(k), str) for k in ("a", "b")):
        raise ValueError("a study needs 'systems': {'a': NAME, 'b': NAME}")
    pairs = doc.get("pairs")
    if not isinstance(pairs, list):
        raise ValueError("a study needs 'pairs': a list of {case, a, b}")
    dimensions = doc.get("dimensions", list(DIMENSIONS))
    if not isinstance(dimensions, list):
        raise ValueError(f"'dimensions' must be a list out of {', '.join(DIMENSIONS)}")
    study_id = doc.get("id")
    if not isinstance(study_id, str):
        raise ValueError("a study needs an 'id' string")
    return Study(id=study_id, title=doc.get("title") or None, system_a=systems["a"], system_b=systems["b"],
                 pairs=tuple(_pair(entry, i, base_dir) for i, entry in enumerate(pairs)),
                 dimensions=tuple(dimensions))


def load_study(path: Path) -> Study:
    """Read and validate a study file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"study file {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"study file {path} is not valid JSON: {exc}") from exc
    return study_from_json(doc, path.resolve().parent)


def make_study(dir_a: Path, dir_b: Path, study_id: str, *, system_a: str | None = None,
               system_b: str | None = None, dimensions: Sequence[str] = tuple(DIMENSIONS),
               title: str | None = None, pattern: str = "*.mp4") -> Study:
    """A study over the videos with the same file name in ``dir_a`` (system A) and ``dir_b`` (system B).

    The case id is the file name without its suffix. Files present on one side only are skipped
    with a warning; no common file at all is an error.
    """
    dirs = (Path(dir_a), Path(dir_b))
    for folder in dirs:
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is not a folder of per-case videos")
    names_a, names_b = ({p.name for p in folder.glob(pattern) if p.is_file()} for folder in dirs)
    common = sorted(names_a & names_b)
    for side, only in (("A", names_a - names_b), ("B", names_b - names_a)):
        if only:
            log.warning("skipping %d video(s) only system %s has: %s", len(only), side, ", ".join(sorted(only)[:5]))
    if not common:
        raise ValueError(f"no {pattern} file name is in both {dirs[0]} and {dirs[1]}")
    pairs = tuple(Pair(Path(name).stem, str((dirs[0] / name).resolve()), str((dirs[1] / name).resolve()))
                  for name in common)
    return Study(id=study_id, system_a=system_a or dirs[0].resolve().name, system_b=system_b or dirs[1].resolve().name,
                 pairs=pairs, dimensions=tuple(dimensions), title=title)


def write_study(study: Study, path: Path) -> Path:
    """Write ``study`` as JSON; local videos are stored relative to the file's folder when inside it."""
    path = Path(path)
    base = path.resolve().parent
    doc = study.to_json()
    for entry in doc["pairs"]:
        for side in ("a", "b"):
            if not is_remote(entry[side]):
                video = Path(entry[side])
                entry[side] = str(video.relative_to(base)) if video.is_relative_to(base) else str(video)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path
