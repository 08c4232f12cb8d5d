"""The ground-truth sidecar of one synthetic video, kept apart from the video itself.

Curation never reads it: it exists to measure how well curation recovers what was planted
(who speaks when, where each face is, which actions happen, who the people are).
"""

from __future__ import annotations

import json
import os
import wave
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.synth.compose import Layout
from lpm_models.data.synth.performance import CONTROL_NAMES, Performance
from lpm_models.data.synth.speech import Voice
from lpm_models.data.synth.timeline import Timeline

TRUTH_SCHEMA = "lpm-synth-truth/1"


def label_segments(labels: list[str]) -> list[dict[str, Any]]:
    """Run-length form of per-frame labels: [{label, start_frame, end_frame (exclusive)}]."""
    segments: list[dict[str, Any]] = []
    for i, label in enumerate(labels):
        if segments and segments[-1]["label"] == label:
            segments[-1]["end_frame"] = i + 1
        else:
            segments.append({"label": label, "start_frame": i, "end_frame": i + 1})
    return segments


def build_truth(
    *, video_id: str, seed: int, layout: Layout, identity_ids: tuple[str, str],
    voices: tuple[Voice, Voice], timeline: Timeline, performance: Performance,
    identity_meta: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble the sidecar document (plain JSON types only)."""
    bbox = {p.person: list(p.bbox) for p in layout.placements}
    persons = []
    for person in (0, 1):
        persons.append({
            "person": person,
            "identity_id": identity_ids[person],
            "identity": (identity_meta or [{}, {}])[person],
            "voice": voices[person].to_dict(),
            "on_screen": person in bbox,
            "bbox": bbox.get(person),
            "labels": performance.labels[person],
            "label_segments": label_segments(performance.labels[person]),
            "blink_frames": performance.blinks[person],
            "controls": {
                name: [round(float(v), 3) for v in performance.controls[person][name]]
                for name in CONTROL_NAMES
            },
        })
    n = performance.n_frames
    return {
        "schema": TRUTH_SCHEMA,
        "video_id": video_id,
        "seed": seed,
        "fps": performance.fps,
        "sample_rate": timeline.sample_rate,
        "n_frames": n,
        "duration_s": n / performance.fps,
        "layout": layout.to_dict(),
        "shots": [{"start_frame": 0, "end_frame": n, "on_screen": sorted(bbox)}],
        "persons": persons,
        "events": [e.to_dict() for e in performance.events],
        "transcript": [u.to_dict() for u in timeline.utterances],
        "voice_tracks": None,
    }


def write_json(path: Path, document: dict[str, Any]) -> None:
    """Write ``document`` atomically (temp file + rename) with stable key order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, sort_keys=True, separators=(",", ":")))
    os.replace(tmp, path)


def write_voice_tracks(path: Path, tracks: np.ndarray, sample_rate: int) -> None:
    """Each person's clean voice as one channel of a 16-bit WAV (channel k = person k).

    tracks: (2, N) float in [-1, 1]. WAV rather than npz because its bytes are reproducible.
    """
    pcm = (np.clip(tracks, -1.0, 1.0) * 32767.0).round().astype("<i2")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with wave.open(str(tmp), "wb") as handle:
        handle.setnchannels(pcm.shape[0])
        handle.setsampwidth(2)
        handle.setframerate(sample_rate)
        handle.writeframes(np.ascontiguousarray(pcm.T).tobytes())
    os.replace(tmp, path)


def read_voice_tracks(path: Path) -> tuple[np.ndarray, int]:
    """(tracks (2, N) float32, sample_rate) from a file written by ``write_voice_tracks``."""
    with wave.open(str(path), "rb") as handle:
        channels, rate = handle.getnchannels(), handle.getframerate()
        pcm = np.frombuffer(handle.readframes(handle.getnframes()), dtype="<i2")
    return pcm.reshape(-1, channels).T.astype(np.float32) / 32767.0, rate


def read_truth(path: Path) -> dict[str, Any]:
    """Load a sidecar, checking its schema tag."""
    document = json.loads(Path(path).read_text())
    if document.get("schema") != TRUTH_SCHEMA:
        raise ValueError(f"{path} is not a {TRUTH_SCHEMA} sidecar (schema={document.get('schema')!r})")
    return document
