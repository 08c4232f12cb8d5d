"""Performance understanding: action detection, descriptors, taxonomy and captions.

Unit tests drive a small 3-D landmark head (eyes, lids, brows, nose, lips, chin, cheeks at
plausible depths, rotated about a pivot behind the face like the corpus renderer) with known
control curves; the corpus test runs detection on real face tracks of rendered videos and
scores it against the sidecars' action events.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from lpm_models.data.curation.captions import (RemoteVLMCaptioner, RuleCaptioner, UnknownLabel, caption_clip,
                                               check_listener_caption, load_taxonomy, make_captioner,
                                               parse_taxonomy, words)
from lpm_models.data.curation.types import LABELS, ActionEvent, FaceTrack
from lpm_models.data.curation.understanding import PerformanceDescriptors, describe, detect_actions
from lpm_models.data.synth.faces import rotation_matrix

log = logging.getLogger(__name__)
FPS = 25
SPEAK, LISTEN = LABELS.index("speak"), LABELS.index("listen")

# (x, y, z) in inter-ocular distances: x right, y down, z away from the camera (nose tip nearest)
HEAD = {
    33: (-0.75, 0, 0), 133: (-0.25, 0, 0), 263: (0.75, 0, 0), 362: (0.25, 0, 0),
    160: (-0.6, -0.08, 0), 158: (-0.4, -0.08, 0), 144: (-0.6, 0.08, 0), 153: (-0.4, 0.08, 0),
    385: (0.4, -0.08, 0), 387: (0.6, -0.08, 0), 380: (0.4, 0.08, 0), 373: (0.6, 0.08, 0),
    105: (-0.5, -0.35, -0.05), 66: (-0.3, -0.35, -0.05), 334: (0.5, -0.35, -0.05), 296: (0.3, -0.35, -0.05),
    1: (0, 0.55, -0.6), 10: (0, -0.8, -0.1), 152: (0, 1.6, -0.2), 234: (-1.0, 0.5, 0.3), 454: (1.0, 0.5, 0.3),
    61: (-0.4, 1.0, -0.2), 291: (0.4, 1.0, -0.2), 13: (0, 0.98, -0.3), 14: (0, 1.02, -0.3),
}
PIVOT = np.array([0.0, 0.5, 1.2])


def head_track(n: int, seed: int = 0, **curves: np.ndarray) -> FaceTrack:
    """A FaceTrack of ``n`` frames whose landmarks follow control curves (yaw/pitch/roll deg,
    jaw/smile/blink 0..1), with 0.3 px landmark noise and 0.4 deg pose noise."""
    rng = np.random.default_rng(seed)
    c = {k: np.asarray(curves.get(k, np.zeros(n)), dtype=np.float64)
         for k in ("yaw", "pitch", "roll", "jaw", "smile", "blink")}
    base = rng.uniform(-1.0, 1.0, (478, 3)) * [1.0, 1.4, 0.0] + [0, 0.5, 0.2]
    for index, point in HEAD.items():
        base[index] = point
    points = np.repeat(base[None], n, axis=0)
    for side, corner in ((-1, 61), (1, 291)):
        points[:, corner, 0] += side * (0.1 * c["smile"] - 0.05 * c["jaw"])
        points[:, corner, 1] += -0.09 * c["smile"] + 0.1 * c["jaw"]
    points[:, 14, 1] += 0.3 * c["jaw"]
    points[:, 152, 1] += 0.3 * c["jaw"]
    for lid in (160, 158, 385, 387):
        points[:, lid, 1] += 0.15 * c["blink"]
    pixels = np.empty((n, 478, 2))
    for i in range(n):
        rot = rotation_matrix(c["yaw"][i], c["pitch"][i], c["roll"][i])
        moved = (points[i] - PIVOT) @ rot.T + PIVOT
        pixels[i] = moved[:, :2] * 60.0 + [128.0, 100.0]
    pixels += rng.normal(0, 0.3, pixels.shape)
    pose = np.column_stack([c["yaw"], c["pitch"], c["roll"]]) + rng.normal(0, 0.4, (n, 3))
    face_h = np.linalg.norm(pixels[:, 10] - pixels[:, 152], axis=1)
    mouth = np.linalg.norm(pixels[:, 13] - pixels[:, 14], axis=1) / face_h
    boxes = np.concatenate([pixels.min(axis=1), pixels.max(axis=1)], axis=1)  # x0, y0, x1, y1
    return FaceTrack(video_id="v", shot_index=0, track_index=0, fps=FPS, frames=np.arange(100, 100 + n),
                     boxes=boxes, crop_boxes=boxes, landmarks=pixels.astype(np.float32),
                     pose=pose.astype(np.float32), mouth_open=mouth.astype(np.float32))


def bump(n: int, start: int, length: int, shape: str = "plateau") -> np.ndarray:
    """(n,) 0..1 curve: a raised-cosine plateau, one sin^2 bump per ``shape == "nod"`` cycle, or a sine."""
    out = np.zeros(n)
    tau = (np.arange(length) + 0.5) / length
    if shape == "plateau":
        ramp = np.clip(np.minimum(tau, 1 - tau) / 0.25, 0, 1)
        out[start:start + length] = 0.5 - 0.5 * np.cos(np.pi * ramp)
    elif shape == "nod":
        out[start:start + length] = np.sin(2 * np.pi * tau) ** 2
    else:
        out[start:start + length] = np.sin(4 * np.pi * tau) * np.sin(np.pi * tau) ** 0.5
    return out


def actions(events: list[ActionEvent], kind: str) -> list[ActionEvent]:
    return [e for e in events if e.action == kind]


def talking_jaw(n: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.convolve(rng.uniform(-0.5, 1.0, n), np.ones(3) / 3, mode="same"), 0, 1)


def test_still_face_has_no_actions() -> None:
    events = detect_actions(head_track(250))
    assert [e for e in events if e.action != "blink"] == []


@pytest.mark.parametrize("kind, curves, expected_side", [
    ("nod", {"pitch": 9.0 * bump(250, 100, 20, "nod")}, 0),
    ("shake", {"yaw": 12.0 * bump(250, 100, 28, "shake")}, 0),
    ("look_away", {"yaw": 18.0 * bump(250, 100, 40)}, 1),
    ("tilt", {"roll": -11.0 * bump(250, 100, 40)}, -1),
    ("smile", {"smile": 0.8 * bump(250, 100, 45), "jaw": talking_jaw(250)}, 0),
])
def test_each_action_is_detected_alone(kind: str, curves: dict[str, np.ndarray], expected_side: int) -> None:
    track = head_track(250, **curves)
    d = describe(track)
    found = [(e, s) for e, s in zip(d.events, d.sides) if e.action != "blink"]
    assert [e.action for e, _ in found] == [kind], found
    event, side = found[0]
    assert event.start_frame < 200 + 45 and event.end_frame > 200  # absolute frames (track starts at 100)
    assert side == expected_side  # +1: the person's own left (yaw/roll > 0)


def test_talking_jaw_is_not_a_smile_and_speech_raises_the_nod_bar() -> None:
    n = 250
    assert actions(detect_actions(head_track(n, jaw=talking_jaw(n))), "smile") == []
    small = head_track(n, pitch=4.0 * bump(n, 100, 20, "nod"))
    listening = np.full(n, LISTEN, np.uint8)
    speaking = np.full(n, SPEAK, np.uint8)
    assert len(actions(detect_actions(small, labels=listening), "nod")) == 1
    assert actions(detect_actions(small, labels=speaking), "nod") == []
    with pytest.raises(ValueError, match="labels"):
        detect_actions(small, labels=speaking[:10])


def test_blinks_are_counted() -> None:
    n, starts = 300, (30, 110, 190, 260)
    blink = np.zeros(n)
    for s in starts:
        blink[s:s + 5] = [0.6, 1.0, 0.85, 0.45, 0.15]
    d = describe(head_track(n, blink=blink))
    assert d.action_counts["blink"] == len(starts)
    assert d.blink_rate_per_min == pytest.approx(60 * len(starts) / (n / FPS))


def test_descriptors_reflect_motion_and_expression() -> None:
    n = 250
    calm = describe(head_track(n))
    busy = describe(head_track(n, yaw=8 * np.sin(np.arange(n) / 4), jaw=talking_jaw(n), smile=0.7 * bump(n, 90, 60)))
    assert busy.motion_energy > 3 * calm.motion_energy
    assert busy.expression_intensity > calm.expression_intensity + 0.2
    assert busy.smile_fraction > 0.12 and calm.smile_fraction == 0.0
    assert busy.mouth_activity > 0.5 > calm.mouth_activity
    labels = np.r_[np.full(100, SPEAK), np.full(150, LISTEN)].astype(np.uint8)
    d = describe(head_track(n), labels)
    assert d.speaking_fraction == pytest.approx(0.4) and d.listening_fraction == pytest.approx(0.6)
    json.dumps(d.to_dict())  # plain JSON types


# ------------------------------------------------------------------ taxonomy and captions


def test_taxonomy_loads_and_rejects_unknown_labels(tmp_path: Path) -> None:
    tax = load_taxonomy()
    assert tax.version.count(".") == 2
    assert {"nod", "shake", "smile", "tilt", "look_away", "blink"} <= set(tax.labels("actions"))
    with pytest.raises(UnknownLabel, match="ecstatic"):
        tax.entry("emotions", "ecstatic")
    with pytest.raises(UnknownLabel, match="section"):
        tax.labels("colours")
    document = yaml.safe_load(resources.files("lpm_models.data.curation").joinpath("taxonomy.yaml").read_text())
    broken = [
        ({**document, "colours": {}}, "unknown taxonomy sections"),
        ({k: v for k, v in document.items() if k != "version"}, "missing"),
        ({**document, "version": "one"}, "version"),
        ({**document, "actions": {k: v for k, v in document["actions"].items() if k != "nod"}}, "nod"),
        ({**document, "emotions": {**document["emotions"], "Happy!": {"adjective": "x", "description": "y"}}},
         "lower_snake_case"),
        ({**document, "demeanours": {**document["demeanours"], "odd": {"phrase": "x", "extra": 1}}}, "exactly"),
    ]
    for bad, message in broken:
        with pytest.raises(ValueError, match=message):
            parse_taxonomy(bad, "test")
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        with pytest.raises(ValueError, match=message):
            load_taxonomy(path)


def _descriptors(events: list[ActionEvent], sides: list[int] | None = None, n: int = 300) -> PerformanceDescriptors:
    counts = {a: sum(e.action == a for e in events) for a in ("nod", "shake", "smile", "tilt", "look_away", "blink")}
    return PerformanceDescriptors(
        track_id="t", fps=FPS, start_frame=1000, n_frames=n, events=events, action_counts=counts,
        blink_rate_per_min=15.0, mouth_activity=0.5, smile_fraction=0.1, brow_activity=0.01,
        gaze_away_fraction=0.05, motion_energy=10.0, expression_intensity=0.4,
        head_orientation=(0.0, 0.0, 0.0), face_aspect=1.15, speaking_fraction=0.5, listening_fraction=0.4,
        sides=sides if sides is not None else [0] * len(events))


def test_speaker_captions_tell_the_actions_in_order() -> None:
    events = [ActionEvent("smile", 1010, 1040), ActionEvent("nod", 1050, 1070), ActionEvent("nod", 1075, 1090),
              ActionEvent("tilt", 1140, 1180), ActionEvent("look_away", 1250, 1290), ActionEvent("blink", 1200, 1204)]
    text = RuleCaptioner().caption(_descriptors(events, [0, 0, 0, -1, 1, 0]), "speaker")
    lowered = text.lower()
    order = [lowered.index(w) for w in ("early on", "smile", "nod twice", "midway", "tilt their head to the right",
                                        "near the end", "look away to the left")]
    assert order == sorted(order), text
    assert "blink" not in lowered  # blinks are counted, not narrated


def test_listener_captions_carry_no_action_or_time() -> None:
    tax = load_taxonomy()
    captioner = RuleCaptioner(tax)
    early = [ActionEvent("nod", 1010, 1030), ActionEvent("smile", 1040, 1080), ActionEvent("shake", 1100, 1125)]
    late = [ActionEvent("shake", 1150, 1175), ActionEvent("nod", 1200, 1220), ActionEvent("smile", 1240, 1280)]
    listener = [captioner.caption(_descriptors(e), "listener") for e in (early, late, [])]
    speaker = [captioner.caption(_descriptors(e), "speaker") for e in (early, late)]
    banned = tax.action_words() | tax.temporal_words
    for text in listener:
        assert not set(words(text)) & banned, text
    assert listener[0] == listener[1]  # when things happen does not reach the listener caption
    assert speaker[0] != speaker[1] and set(words(speaker[0])) & tax.action_words()
    with pytest.raises(ValueError, match="time-invariant"):
        check_listener_caption("A listener who nods, then smiles.", tax)
    with pytest.raises(ValueError, match="caption role"):
        captioner.caption(_descriptors(early), "narrator")


class _FakeVLM(BaseHTTPRequestHandler):
    """Local test double of a VLM caption endpoint: records requests, answers from a script."""

    requests: list[dict[str, Any]] = []
    answers: list[tuple[int, dict[str, Any]]] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        status, answer = type(self).answers.pop(0)
        payload = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def fake_vlm() -> Any:
    server = HTTPServer(("127.0.0.1", 0), _FakeVLM)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _FakeVLM.requests, _FakeVLM.answers = [], []
    yield f"http://127.0.0.1:{server.server_port}/v1/caption", _FakeVLM
    server.shutdown()
    server.server_close()


def test_remote_captioner_is_off_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LPM_VLM_URL", raising=False)
    monkeypatch.delenv("LPM_VLM_API_KEY", raising=False)
    assert isinstance(make_captioner(), RuleCaptioner)
    with pytest.raises(RuntimeError, match="LPM_VLM_URL and LPM_VLM_API_KEY"):
        make_captioner("remote")
    monkeypatch.setenv("LPM_VLM_URL", "http://127.0.0.1:9/x")
    with pytest.raises(RuntimeError, match="LPM_VLM_API_KEY"):
        RemoteVLMCaptioner.from_env()
    with pytest.raises(ValueError, match="unknown captioner"):
        make_captioner("magic")


def test_remote_captioner_request_format(fake_vlm: Any) -> None:
    url, server = fake_vlm
    captioner = RemoteVLMCaptioner.from_env(environ={"LPM_VLM_URL": url, "LPM_VLM_API_KEY": "sekret"})
    assert "sekret" not in repr(captioner)
    server.answers += [(200, {"caption": "A person speaks and nods twice."}),
                       (200, {"caption": "A listener with an oval face, calm and composed."})]
    d = _descriptors([ActionEvent("nod", 1010, 1030), ActionEvent("nod", 1040, 1060)])
    assert caption_clip(d, captioner) == {"speaker": "A person speaks and nods twice.",
                                          "listener": "A listener with an oval face, calm and composed."}
    speaker, listener = server.requests
    assert speaker["path"] == "/v1/caption" and speaker["headers"]["Authorization"] == "Bearer sekret"
    assert speaker["headers"]["Content-Type"] == "application/json"
    assert speaker["body"]["task"] == "lpm-performance-caption" and speaker["body"]["role"] == "speaker"
    assert speaker["body"]["taxonomy_version"] == load_taxonomy().version
    assert len(speaker["body"]["descriptors"]["events"]) == 2
    assert "nod" in speaker["body"]["vocabulary"]["actions"]
    assert listener["body"]["role"] == "listener" and "events" not in listener["body"]["descriptors"]
    assert "never use" in listener["body"]["instructions"]
    server.answers += [(200, {"caption": "A listener who nods then smiles."}), (500, {"error": "boom"}),
                       (200, {"text": "wrong field"})]
    with pytest.raises(ValueError, match="time-invariant"):
        captioner.caption(d, "listener")
    with pytest.raises(RuntimeError, match="HTTP 500"):
        captioner.caption(d, "speaker")
    with pytest.raises(RuntimeError, match="no 'caption'"):
        captioner.caption(d, "speaker")


# ------------------------------------------------------------------ rendered corpus


def test_actions_and_captions_on_rendered_corpus(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Real face tracks of rendered videos: action precision/recall against the sidecars, captions."""
    from lpm_models.data.synth.speech import espeak_available

    if not espeak_available():
        pytest.skip("espeak-ng is not installed")
    from lpm_models.data.curation.accuracy import bench_corpus, evaluate_actions, evaluate_pairing

    root, tracks = bench_corpus(Path(tmp_path_factory.getbasetemp()))
    _, labels = evaluate_pairing(root, tracks)
    score, _ = evaluate_actions(root, tracks, labels=labels)
    tp, fp, fn = score.totals()
    log.info("actions: precision %.3f recall %.3f (tp %d fp %d fn %d) %s", score.precision, score.recall,
             tp, fp, fn, score.to_dict()["per_action"])
    assert tp + fn >= 20  # enough planted events to mean something
    assert score.precision >= 0.7 and score.recall >= 0.75, score.to_dict()
    captioner = RuleCaptioner()
    for video_tracks in tracks.values():
        for track in video_tracks:
            captions = caption_clip(describe(track, labels[track.track_id].labels), captioner)
            check_listener_caption(captions["listener"], captioner.taxonomy)
            assert captions["speaker"].startswith("A person")


def test_unknown_action_labels_are_rejected_by_the_captioner() -> None:
    d = _descriptors([ActionEvent("wave", 1010, 1030)])
    with pytest.raises(UnknownLabel, match="wave"):
        RuleCaptioner().caption(d, "speaker")
    replaced = replace(d, events=[ActionEvent("nod", 1010, 1030)])
    assert "nod" in RuleCaptioner().caption(replaced, "speaker")
