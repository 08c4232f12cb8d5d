"""Benchmark cases with known answers, built from the synthetic conversation corpus, and degraded copies.

Each person of a corpus conversation becomes a single-character case: the corpus renderer draws
that person's ground-truth performance (the sidecar's per-frame face controls) alone on screen;
their own voice is the ``speak`` audio and the other person's voice the ``listen`` audio; the
reference image is the identity's neutral portrait; the prompts are the person's action events.
Optionally extra prompted actions are planted into the performance (``prompt_every_s``) with the
corpus' own event book and action curves, so text control has enough prompts to score.

Degraded variants change one thing each, so every metric has a case it must catch:
``audio_shift`` (audio delayed), ``identity_swap`` (same performance, another identity's face),
``identity_drift`` (cross-fade into another identity over the video), ``frozen`` (the first frame
repeated), ``prompts_ignored`` (the performance without its actions) and ``unpaired`` (the other
person's performance on this face). Only tests and :mod:`.validate` read ground truth this way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lpm_models.data.curation.accuracy import read_sidecar, truth_labels
from lpm_models.data.curation.crops import square_crop
from lpm_models.data.synth.actions import ActionEvent, EventBook, apply_event
from lpm_models.data.synth.compose import StageTimes, encode_mp4, make_layout, render_frames
from lpm_models.data.synth.corpus import read_manifest
from lpm_models.data.synth.faces import FaceControls
from lpm_models.data.synth.performance import CONTROL_NAMES, LIMITS, Performance
from lpm_models.data.synth.script import ACTIONS
from lpm_models.data.synth.truth import read_voice_tracks
from quality.bench.case import CaseAudio, Prompt

if TYPE_CHECKING:
    from lpm_models.data.synth.identities import IdentityBank

log = logging.getLogger(__name__)

Controls = dict[str, np.ndarray]
DEGRADATIONS = ("audio_shift", "identity_swap", "identity_drift", "frozen", "prompts_ignored", "unpaired")


@dataclass
class GroundTruthCase:
    """One person of one corpus conversation as a benchmark case with its answers.

    controls: the person's per-frame face controls (with any planted prompts); events: the
    person's action events in those controls; other_controls: the other person's controls;
    swap_identity: the bank identity least like this one (dlib), for the identity degradations.
    """

    case_id: str
    person: int
    identity_id: str
    swap_identity: str
    fps: int
    size: int
    audio: CaseAudio
    labels: np.ndarray
    controls: Controls
    other_controls: Controls
    events: list[ActionEvent]
    reference_image: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return len(self.labels)

    @property
    def prompts(self) -> list[Prompt]:
        return [Prompt(e.action, e.start_frame, e.end_frame, text=e.action.replace("_", " ")) for e in self.events]


@dataclass
class Variant:
    """A video to evaluate for a case: frames (N, S, S, 3) uint8, the audio it is judged against."""

    name: str
    frames: np.ndarray
    audio: CaseAudio
    same_frames_as: str | None = None  # a variant whose video (and features) this one shares


def render(bank: "IdentityBank", identity_id: str, controls: Controls, size: int, fps: int) -> np.ndarray:
    """(N, size, size, 3) uint8 frames of ``controls`` on ``identity_id``'s face (the corpus renderer)."""
    n = len(controls[CONTROL_NAMES[0]])
    performance = Performance(fps, n, [controls], [["idle"] * n], [], [[]])
    layout = make_layout("single", size, on_screen=0)
    rig = bank.rig(identity_id, size)
    return np.stack([frame.copy() for frame in render_frames(performance, layout, [rig], StageTimes())])


@dataclass(frozen=True)
class FaceFraming:
    """How a case is framed like a curated clip: render at ``render_size``, cut the square ``box``
    (side = crop_scale x the neutral face's landmark box, centred on it: curation's crop rule),
    resize to the case size. The box is fixed over the case (the head moves a little inside it,
    as inside a curated clip's smoothed track box)."""

    render_size: int
    box: tuple[float, float, float, float]

    def apply(self, frame: np.ndarray, size: int) -> np.ndarray:
        return square_crop(frame, self.box, size)


def face_framing(bank: "IdentityBank", identity_id: str, size: int, crop_scale: float) -> FaceFraming:
    """The framing of ``identity_id`` whose crop box holds about ``size`` rendered pixels."""
    if crop_scale <= 1.0:
        raise ValueError(f"crop_scale must be > 1 (the box holds the whole face), got {crop_scale}")
    x0, y0, x1, y1 = bank.rig(identity_id, size).neutral_face_box()
    face_fraction = max(x1 - x0, y1 - y0) / size
    render_size = max(size, 2 * int(np.ceil(size / (2 * crop_scale * face_fraction))))  # the renderer wants even sizes
    k = render_size / size  # a rig's points scale linearly with its size: no second rig needed
    x0, y0, x1, y1 = x0 * k, y0 * k, x1 * k, y1 * k
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, crop_scale * max(x1 - x0, y1 - y0) / 2
    return FaceFraming(render_size, (cx - half, cy - half, cx + half, cy + half))


def neutral_portrait(bank: "IdentityBank", identity_id: str, size: int) -> np.ndarray:
    """The identity's neutral frontal render: the case's reference image."""
    return bank.rig(identity_id, size).render(FaceControls())


def farthest_identity(bank: "IdentityBank", identity_id: str) -> str:
    """The bank identity whose neutral portrait is farthest from ``identity_id``'s (dlib distance)."""
    ids = bank.ids
    here = bank.embeddings[ids.index(identity_id)]
    distances = np.linalg.norm(bank.embeddings - here, axis=1)
    return ids[int(np.argmax(distances))]


def _clip(controls: Controls) -> Controls:
    return {k: np.clip(v, *LIMITS[k]).astype(np.float32) for k, v in controls.items()}


def event_curves(events: list[ActionEvent], n: int) -> Controls:
    """What ``events`` add to zero controls of ``n`` frames (the corpus' action curves)."""
    delta = {k: np.zeros(n, np.float32) for k in CONTROL_NAMES}
    for event in events:
        apply_event(delta, event)
    return delta


def plant_prompts(controls: Controls, events: list[ActionEvent], person: int, fps: int, every_s: float,
                  seed: int) -> tuple[Controls, list[ActionEvent]]:
    """Add an action every ``every_s`` seconds (cycling through the actions) where the person has room."""
    n = len(controls[CONTROL_NAMES[0]])
    rng = np.random.default_rng(seed)
    book = EventBook(n, fps, guard_s=0.4)
    book.events = list(events)
    planted = []
    for k, start_s in enumerate(np.arange(0.6, n / fps - 1.6, every_s)):
        event = book.add(rng, person, ACTIONS[k % len(ACTIONS)], float(start_s + rng.uniform(0.0, 0.3)), "scripted")
        if event is not None:
            planted.append(event)
    delta = event_curves(planted, n)
    return _clip({k: controls[k] + delta[k] for k in CONTROL_NAMES}), sorted(events + planted,
                                                                           key=lambda e: e.start_frame)


def load_cases(corpus_dir: Path, bank: "IdentityBank", prompt_every_s: float = 0.0,
               seed: int = 0) -> Iterator[GroundTruthCase]:
    """Every person of every conversation of a generated corpus as a :class:`GroundTruthCase`."""
    corpus_dir = Path(corpus_dir)
    manifest = read_manifest(corpus_dir)
    size = int(manifest["config"]["size"])
    for video in manifest["videos"]:
        truth = read_sidecar(corpus_dir / video["truth"])
        voices, rate = read_voice_tracks(corpus_dir / "truth" / truth["voice_tracks"]["path"])
        fps, n = int(truth["fps"]), int(truth["n_frames"])
        controls = [{k: np.asarray(p["controls"][k], np.float32) for k in CONTROL_NAMES} for p in truth["persons"]]
        for person in (0, 1):
            events = [ActionEvent(**e) for e in truth["events"] if e["person"] == person]
            own = controls[person]
            if prompt_every_s > 0:
                own, events = plant_prompts(own, events, person, fps, prompt_every_s, seed + person)
            identity = truth["persons"][person]["identity_id"]
            yield GroundTruthCase(
                case_id=f"{video['video_id']}-p{person}", person=person, identity_id=identity,
                swap_identity=farthest_identity(bank, identity), fps=fps, size=size,
                audio=CaseAudio(voices[person], voices[1 - person], rate),
                labels=truth_labels(truth, person, np.arange(n)), controls=own, other_controls=controls[1 - person],
                events=events, reference_image=neutral_portrait(bank, identity, size),
                meta={"video_id": video["video_id"], "layout": video["layout"]})


def without_events(case: GroundTruthCase) -> Controls:
    """The case's controls with all of its action events taken out (prompts ignored)."""
    delta = event_curves(case.events, case.n_frames)
    return _clip({k: case.controls[k] - delta[k] for k in CONTROL_NAMES})


def make_variant(case: GroundTruthCase, name: str, bank: "IdentityBank", truth_frames: np.ndarray,
                 shift_frames: int = 8) -> Variant:
    """The degraded video ``name`` (one of :data:`DEGRADATIONS`) of a case."""
    if name == "audio_shift":
        return Variant(name, truth_frames, case.audio.shifted(shift_frames, case.fps), same_frames_as="ground_truth")
    if name == "frozen":
        return Variant(name, np.repeat(truth_frames[:1], len(truth_frames), axis=0), case.audio)
    if name in ("identity_swap", "identity_drift"):
        swapped = render(bank, case.swap_identity, case.controls, case.size, case.fps)
        if name == "identity_swap":
            return Variant(name, swapped, case.audio)
        alpha = np.linspace(0.0, 1.0, len(swapped))[:, None, None, None]
        blend = (1.0 - alpha) * truth_frames.astype(np.float32) + alpha * swapped.astype(np.float32)
        return Variant(name, np.round(blend).astype(np.uint8), case.audio)
    if name == "prompts_ignored":
        return Variant(name, render(bank, case.identity_id, without_events(case), case.size, case.fps), case.audio)
    if name == "unpaired":
        return Variant(name, render(bank, case.identity_id, case.other_controls, case.size, case.fps), case.audio)
    raise ValueError(f"unknown degradation {name!r}; expected one of {DEGRADATIONS}")


def write_video(path: Path, frames: np.ndarray, audio: CaseAudio, fps: int) -> Path:
    """Encode frames + the speech channel as H.264 + AAC with the corpus encoder."""
    height, width = frames.shape[1:3]
    encode_mp4(Path(path), iter(frames), audio.speak, width, height, fps, audio.sample_rate, StageTimes())
    return Path(path)
