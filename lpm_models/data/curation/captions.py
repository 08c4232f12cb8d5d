"""Natural-language performance captions over a versioned taxonomy.

Speaker captions say what happens over time (actions in order, with rough positions in the
clip). Listener captions keep only time-invariant attributes (face shape, steady head
orientation, steady demeanour) so that listening behaviour is learned from the other person's
audio, not from text: they must contain no action word and no temporal word of the taxonomy
(``check_listener_caption``).

``RuleCaptioner`` (default) builds captions from descriptors; ``RemoteVLMCaptioner`` asks an
HTTP endpoint (URL and API key from the environment; off unless chosen) and applies the same
listener rule to its answer.
"""

from __future__ import annotations

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Protocol

import yaml

from lpm_models.data.curation.understanding import PerformanceDescriptors

log = logging.getLogger(__name__)

ROLES = ("speaker", "listener")
SECTIONS: dict[str, tuple[str, ...]] = {  # section -> fields every entry must have
    "emotions": ("adjective", "description"),
    "expression_bases": ("phrase", "description"),
    "motion_descriptors": ("adjective", "max_energy"),
    "head_orientations": ("phrase",),
    "demeanours": ("phrase",),
    "face_shapes": ("phrase",),
    "actions": ("verb", "plural", "words"),
}
REQUIRED_ACTIONS = ("nod", "shake", "smile", "tilt", "look_away", "blink")
_LABEL = re.compile(r"^[a-z][a-z0-9_]*$")
_WORD = re.compile(r"[a-z]+(?:-[a-z]+)*")


class UnknownLabel(ValueError):
    """A label that is not in the taxonomy section it was looked up in."""


@dataclass(frozen=True)
class Taxonomy:
    """A validated taxonomy: version, sections of labelled entries, temporal words."""

    version: str
    sections: Mapping[str, Mapping[str, Mapping[str, Any]]]
    temporal_words: frozenset[str]
    source: str

    def labels(self, section: str) -> tuple[str, ...]:
        """Labels of ``section`` in file order."""
        if section not in self.sections:
            raise UnknownLabel(f"unknown taxonomy section {section!r}; expected one of {sorted(self.sections)}")
        return tuple(self.sections[section])

    def entry(self, section: str, label: str) -> Mapping[str, Any]:
        """The entry of ``label`` in ``section``; UnknownLabel names the known labels."""
        known = self.labels(section)
        if label not in known:
            raise UnknownLabel(f"{label!r} is not a {section} label of taxonomy {self.version} "
                               f"({self.source}); known: {', '.join(known)}")
        return self.sections[section][label]

    def action_words(self) -> frozenset[str]:
        """Every surface form of every action (lower case)."""
        return frozenset(w for e in self.sections["actions"].values() for w in e["words"])


def parse_taxonomy(document: Any, source: str = "<memory>") -> Taxonomy:
    """Validate a taxonomy document (the YAML's parsed form); raise ValueError on any problem."""
    if not isinstance(document, dict):
        raise ValueError(f"{source}: a taxonomy must be a mapping, got {type(document).__name__}")
    allowed = {"version", "temporal_words", *SECTIONS}
    unknown = set(document) - allowed
    missing = allowed - set(document)
    if unknown or missing:
        raise ValueError(f"{source}: unknown taxonomy sections {sorted(unknown)}, missing {sorted(missing)}")
    version = document["version"]
    if not isinstance(version, str) or not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise ValueError(f"{source}: version must be a 'MAJOR.MINOR.PATCH' string, got {version!r}")
    sections: dict[str, dict[str, dict[str, Any]]] = {}
    for name, fields in SECTIONS.items():
        entries = document[name]
        if not isinstance(entries, dict) or not entries:
            raise ValueError(f"{source}: section {name!r} must be a non-empty mapping of label -> entry")
        for label, entry in entries.items():
            if not isinstance(label, str) or not _LABEL.match(label):
                raise ValueError(f"{source}: {name} label {label!r} must be lower_snake_case")
            if not isinstance(entry, dict) or set(entry) != set(fields):
                raise ValueError(f"{source}: {name}.{label} must have exactly the fields {list(fields)}, "
                                 f"got {sorted(entry) if isinstance(entry, dict) else entry!r}")
        sections[name] = {label: dict(entry) for label, entry in entries.items()}
    absent = [a for a in REQUIRED_ACTIONS if a not in sections["actions"]]
    if absent:
        raise ValueError(f"{source}: actions {absent} are detected by understanding but missing from the taxonomy")
    for label, entry in sections["actions"].items():
        if not entry["words"] or not all(isinstance(w, str) and w == w.lower() for w in entry["words"]):
            raise ValueError(f"{source}: actions.{label}.words must be a non-empty list of lower-case words")
    bands = [float(e["max_energy"]) for e in sections["motion_descriptors"].values()]
    if bands != sorted(bands):
        raise ValueError(f"{source}: motion_descriptors must be listed by increasing max_energy, got {bands}")
    temporal = document["temporal_words"]
    if not isinstance(temporal, list) or not all(isinstance(w, str) for w in temporal):
        raise ValueError(f"{source}: temporal_words must be a list of words")
    return Taxonomy(version, sections, frozenset(w.lower() for w in temporal), source)


def load_taxonomy(path: Path | str | None = None) -> Taxonomy:
    """Load and validate a taxonomy YAML (default: the packaged ``taxonomy.yaml``)."""
    if path is None:
        text = resources.files("lpm_models.data.curation").joinpath("taxonomy.yaml").read_text()
        source = "lpm_models/data/curation/taxonomy.yaml"
    else:
        text, source = Path(path).read_text(), str(path)
    return parse_taxonomy(yaml.safe_load(text), source)


def words(text: str) -> list[str]:
    """Lower-case word tokens of ``text`` (hyphenated words also split into their parts)."""
    out: list[str] = []
    for token in _WORD.findall(text.lower()):
        out.append(token)
        if "-" in token:
            out.extend(token.split("-"))
    return out


def check_listener_caption(text: str, taxonomy: Taxonomy) -> None:
    """Raise ValueError if a listener caption mentions an action or a temporal word."""
    banned = taxonomy.action_words() | taxonomy.temporal_words
    found = sorted({w for w in words(text) if w in banned})
    if found:
        raise ValueError(f"listener captions may carry only time-invariant attributes; {text!r} uses "
                         f"action/temporal words {found} (taxonomy {taxonomy.version})")


class Captioner(Protocol):
    """Turns a clip's descriptors into a caption for one role ("speaker" or "listener")."""

    def caption(self, descriptors: PerformanceDescriptors, role: str) -> str: ...


def _check_role(role: str) -> None:
    if role not in ROLES:
        raise ValueError(f"unknown caption role {role!r}; expected one of {ROLES}")


@dataclass(frozen=True)
class CaptionLabels:
    """Taxonomy labels chosen for one clip (each validated against the taxonomy)."""

    emotion: str
    motion: str
    orientation: str
    demeanour: str
    face_shape: str


_COUNT_WORDS = {2: "twice", 3: "three times", 4: "four times"}
_POSITIONS = ("early on", "midway", "near the end")


def _side(sign: int) -> str:
    return "left" if sign > 0 else "right"  # subject's own side (image right = their left)


class RuleCaptioner:
    """Deterministic captions from descriptors via the taxonomy (the default captioner)."""

    def __init__(self, taxonomy: Taxonomy | None = None) -> None:
        self.taxonomy = taxonomy or load_taxonomy()

    def choose(self, d: PerformanceDescriptors) -> CaptionLabels:
        """Pick emotion, motion band, orientation, demeanour and face shape for a clip."""
        c, minutes = d.action_counts, max(d.duration_s / 60.0, 1e-6)
        if d.smile_fraction >= 0.25:
            emotion = "happy"
        elif c.get("smile", 0):
            emotion = "amused"
        elif c.get("shake", 0):
            emotion = "doubtful"
        elif d.gaze_away_fraction >= 0.1 or c.get("tilt", 0) >= 2:
            emotion = "thoughtful"
        elif d.brow_activity >= 0.04 or c.get("nod", 0) / minutes >= 8:
            emotion = "interested"
        else:
            emotion = "calm" if d.motion_energy < 6.0 else "neutral"
        bands = self.taxonomy.sections["motion_descriptors"]
        motion = next((k for k, e in bands.items() if d.motion_energy <= float(e["max_energy"])), list(bands)[-1])
        yaw, pitch, _ = d.head_orientation
        orientation = ("turned_left" if yaw > 8 else "turned_right" if yaw < -8 else
                       "chin_down" if pitch > 12 else "chin_up" if pitch < -12 else "frontal")
        if d.smile_fraction >= 0.2:
            demeanour = "warm"
        elif c.get("nod", 0) / minutes >= 6 or motion in ("animated", "energetic"):
            demeanour = "attentive"
        elif c.get("shake", 0) and not c.get("smile", 0):
            demeanour = "serious"
        elif d.expression_intensity < 0.2 and motion in ("still", "calm"):
            demeanour = "reserved"
        else:
            demeanour = "composed"
        face = "long" if d.face_aspect > 1.22 else "round" if d.face_aspect < 1.08 else "oval"
        labels = CaptionLabels(emotion, motion, orientation, demeanour, face)
        chosen = (("emotions", emotion), ("motion_descriptors", motion), ("head_orientations", orientation),
                  ("demeanours", demeanour), ("face_shapes", face))
        for section, label in chosen:
            self.taxonomy.entry(section, label)
        return labels

    def caption(self, descriptors: PerformanceDescriptors, role: str) -> str:
        _check_role(role)
        labels = self.choose(descriptors)
        if role == "listener":
            text = self._listener(labels)
            check_listener_caption(text, self.taxonomy)
            return text
        return self._speaker(descriptors, labels)

    def _phrase(self, action: str, count: int, side: int) -> str:
        entry = self.taxonomy.entry("actions", action)
        if count == 1:
            return str(entry["verb"]).format(side=_side(side))
        text = str(entry["plural"]).format(count=count)
        return text.replace(f"{count} times", _COUNT_WORDS.get(count, f"{count} times"))

    def timeline(self, d: PerformanceDescriptors) -> list[str]:
        """Clauses per third of the clip, actions in order, repeats merged ("nods twice")."""
        events = sorted(zip(d.events, d.sides or [0] * len(d.events)), key=lambda es: es[0].start_frame)
        parts: list[list[tuple[str, int, int]]] = [[], [], []]
        for event, side in events:
            if event.action == "blink":
                continue
            self.taxonomy.entry("actions", event.action)
            centre = (event.start_frame + event.end_frame) / 2 - d.start_frame
            third = min(2, max(0, int(3 * centre / max(d.n_frames, 1))))
            group = parts[third]
            if group and group[-1][0] == event.action:
                group[-1] = (event.action, group[-1][1] + 1, group[-1][2])
            else:
                group.append((event.action, 1, side))
        clauses = []
        for position, group in zip(_POSITIONS, parts):
            if group:
                clauses.append(f"{position} they " + ", then ".join(self._phrase(a, n, s) for a, n, s in group))
        return clauses

    def _speaker(self, d: PerformanceDescriptors, labels: CaptionLabels) -> str:
        tax = self.taxonomy
        emotion = tax.entry("emotions", labels.emotion)["adjective"]
        motion = tax.entry("motion_descriptors", labels.motion)["adjective"]
        orientation = tax.entry("head_orientations", labels.orientation)["phrase"]
        talk = ("talks for most of the clip" if (d.speaking_fraction or 0) >= 0.6 else
                "speaks in short turns" if (d.speaking_fraction or 0) > 0 else "speaks")
        article = "an" if str(emotion)[0] in "aeiou" else "a"
        sentences = [f"A person {talk}, {orientation}, with {article} {emotion} expression and {motion} head motion."]
        clauses = self.timeline(d)
        if clauses:
            text = "; ".join(clauses)
            sentences.append(text[0].upper() + text[1:] + ".")
        else:
            sentences.append("Their head stays steady without distinct gestures.")
        if d.blink_rate_per_min >= 25:
            sentences.append("They blink often.")
        return " ".join(sentences)

    def _listener(self, labels: CaptionLabels) -> str:
        tax = self.taxonomy
        face = tax.entry("face_shapes", labels.face_shape)["phrase"]
        orientation = tax.entry("head_orientations", labels.orientation)["phrase"]
        demeanour = tax.entry("demeanours", labels.demeanour)["phrase"]
        return f"A listener with {face}, {orientation}, {demeanour} in demeanour."


class RemoteVLMCaptioner:
    """Captions from a remote vision-language model behind an HTTP endpoint (off by default).

    POSTs JSON ``{"task", "role", "instructions", "taxonomy_version", "vocabulary", "descriptors"}``
    with ``Authorization: Bearer <key>``; expects ``{"caption": "..."}``. Listener answers must obey
    the listener rule, else ValueError. Configure with LPM_VLM_URL and LPM_VLM_API_KEY.
    """

    URL_ENV = "LPM_VLM_URL"
    KEY_ENV = "LPM_VLM_API_KEY"

    def __init__(self, url: str, api_key: str, taxonomy: Taxonomy | None = None, timeout_s: float = 30.0,
                 model: str | None = None) -> None:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"RemoteVLMCaptioner url must be http(s)://..., got {url!r}")
        if not api_key:
            raise ValueError("RemoteVLMCaptioner needs a non-empty API key")
        self.url, self._key, self.timeout_s, self.model = url, api_key, timeout_s, model
        self.taxonomy = taxonomy or load_taxonomy()

    def __repr__(self) -> str:  # never show the key
        return f"RemoteVLMCaptioner(url={self.url!r}, model={self.model!r})"

    @classmethod
    def from_env(cls, taxonomy: Taxonomy | None = None, environ: Mapping[str, str] | None = None,
                 **kwargs: Any) -> "RemoteVLMCaptioner":
        """Build from LPM_VLM_URL / LPM_VLM_API_KEY; a clear error names what is missing."""
        env = os.environ if environ is None else environ
        url, key = env.get(cls.URL_ENV, ""), env.get(cls.KEY_ENV, "")
        missing = [name for name, value in ((cls.URL_ENV, url), (cls.KEY_ENV, key)) if not value]
        if missing:
            raise RuntimeError(f"the remote VLM captioner is not configured: set {' and '.join(missing)} "
                               f"(endpoint URL and API key), or use the default rule captioner")
        return cls(url, key, taxonomy, **kwargs)

    def request_body(self, descriptors: PerformanceDescriptors, role: str) -> dict[str, Any]:
        """The JSON document sent for one caption."""
        _check_role(role)
        tax = self.taxonomy
        if role == "listener":
            instructions = ("Describe only time-invariant attributes of the listener (appearance, steady "
                            "head orientation, steady demeanour). Do not mention actions or timing; "
                            f"never use these words: {', '.join(sorted(tax.action_words() | tax.temporal_words))}.")
        else:
            instructions = "Describe what the speaker does over time, in order, using the vocabulary."
        body = {
            "task": "lpm-performance-caption", "role": role, "instructions": instructions,
            "taxonomy_version": tax.version,
            "vocabulary": {s: list(tax.labels(s)) for s in ("emotions", "actions", "demeanours", "head_orientations")},
            "descriptors": descriptors.to_dict(),
        }
        if role == "listener":  # the timeline must not reach the model either
            body["descriptors"] = {k: v for k, v in body["descriptors"].items() if k not in ("events", "sides")}
        if self.model:
            body["model"] = self.model
        return body

    def caption(self, descriptors: PerformanceDescriptors, role: str) -> str:
        body = json.dumps(self.request_body(descriptors, role)).encode()
        request = urllib.request.Request(self.url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json",
            "Authorization": f"Bearer {self._key}"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310 - http(s) only
                payload = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200].decode(errors="replace")
            raise RuntimeError(f"VLM captioner at {self.url} answered HTTP {exc.code}: {detail}") from exc
        except (urllib.error.URLError, TimeoutError) as exc:
            raise RuntimeError(f"VLM captioner at {self.url} is unreachable ({exc}); check {self.URL_ENV}") from exc
        except json.JSONDecodeError as exc:
            raise RuntimeError(f"VLM captioner at {self.url} returned non-JSON: {exc}") from exc
        text = payload.get("caption") if isinstance(payload, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise RuntimeError(f"VLM captioner at {self.url} returned no 'caption' string: {str(payload)[:200]}")
        if role == "listener":
            check_listener_caption(text, self.taxonomy)
        return text.strip()


def make_captioner(kind: str = "rule", taxonomy: Taxonomy | None = None) -> Captioner:
    """The captioner named ``kind``: "rule" (default) or "remote" (configured from the environment)."""
    if kind == "rule":
        return RuleCaptioner(taxonomy)
    if kind == "remote":
        return RemoteVLMCaptioner.from_env(taxonomy)
    raise ValueError(f"unknown captioner {kind!r}; expected 'rule' or 'remote'")


def caption_clip(descriptors: PerformanceDescriptors, captioner: Captioner | None = None) -> dict[str, str]:
    """Both captions of a clip: {"speaker": ..., "listener": ...}."""
    captioner = captioner or RuleCaptioner()
    return {role: captioner.caption(descriptors, role) for role in ROLES}
