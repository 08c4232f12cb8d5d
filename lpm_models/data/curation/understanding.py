"""Performance understanding: per-clip descriptors and action events from landmarks and pose.

Signals (one value per track frame) come from the face mesh and the head pose:
head yaw / pitch / roll, a pitch proxy from the nose's drop below the eye line, mouth width
(smile), eye aspect ratio (blinks), brow height, mouth opening, face proportions. Each is
expressed against the track's own slow baseline (a rolling median), so a person's resting
posture and face shape do not count as actions.

Actions (``types.ActionEvent``): nod (pitch bumps, chin down and back), shake (yaw oscillation
with alternating swings), tilt (sustained roll offset), look_away (sustained one-sided yaw
offset), smile (mouth widening beyond what mouth opening explains), blink (eye aspect ratio dip).
A talking person's head bobs with the syllables, so nods need a larger pitch excursion on
frames the pairing stage labelled "speak".

``describe`` summarises a clip (events, rates, motion energy, expression intensity, steady
head orientation and face proportions) for the captioner.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from lpm_models.data.curation.pairing import local_std
from lpm_models.data.curation.types import LABELS, ActionEvent, FaceTrack
from lpm_models.data.curation.vad import runs

log = logging.getLogger(__name__)

# MediaPipe face-mesh indices (subject's right = image left on a frontal face).
EYE_R_CORNERS, EYE_L_CORNERS = (33, 133), (263, 362)
EYE_R_LIDS, EYE_L_LIDS = ((160, 144), (158, 153)), ((385, 380), (387, 373))
MOUTH_CORNERS = (61, 291)
NOSE_TIP, FOREHEAD, CHIN, CHEEKS = 1, 10, 152, (234, 454)
BROWS = (105, 66, 334, 296)


@dataclass(frozen=True)
class UnderstandingConfig:
    """Action-detection thresholds (defaults tuned on the synthetic corpus, see ``accuracy``).

    Angles are in degrees of the measured pose; smile in inter-ocular distances (IOD).
    baseline_s:      rolling-median window of the slow baselines the signals are measured against
    nod_deg:         a nod bump rises this far above the pitch baseline (chin down) ...
    nod_speaking_deg: ... or this far while the person speaks (speech moves the head anyway)
    nod_min_s / nod_max_s: ... and lasts this long (bumps closer than nod_join_s form one nod)
    nod_smooth_s:    Gaussian sigma on the pitch signal: keeps nod-rate bumps (~2 Hz), damps the
                     syllable-rate head bobbing of speech (~4-5 Hz) and landmark jitter
    shake_deg:       alternating yaw swings reach this far from the high-passed centre ...
    shake_min_swings: ... at least this many times, each within shake_max_half_s of the previous
    tilt_deg / tilt_min_s:           sustained roll offset and its minimum duration
    look_away_deg / look_away_min_s: sustained one-sided yaw offset and its minimum duration
    smile_rise / smile_min_s:        mouth widening (IOD) beyond the jaw-explained width, duration
    blink_drop:      a blink's eye aspect ratio falls below (1 - blink_drop) of its baseline
    max_event_s:     sustained offsets (tilt, look_away, smile) longer than this are posture,
                     not actions, and are not reported
    """

    baseline_s: float = 6.0
    nod_deg: float = 2.5
    nod_speaking_deg: float = 5.0
    nod_min_s: float = 0.16
    nod_max_s: float = 2.0
    nod_join_s: float = 0.3
    nod_smooth_s: float = 0.04
    shake_deg: float = 3.0
    shake_min_swings: int = 3
    shake_max_half_s: float = 0.45
    tilt_deg: float = 5.0
    tilt_min_s: float = 0.5
    look_away_deg: float = 8.5
    look_away_min_s: float = 0.4
    smile_rise: float = 0.06
    smile_min_s: float = 0.5
    blink_drop: float = 0.2
    max_event_s: float = 4.0

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if isinstance(value, (int, float)) and value <= 0:
                raise ValueError(f"UnderstandingConfig.{name} must be > 0, got {value}")


@dataclass
class FaceSignals:
    """Per-frame measurements of one track (N frames).

    yaw, pitch, roll: (N,) degrees (types.FaceTrack conventions)
    nose_drop:   (N,) nose tip below the eye line, in IOD (grows when the chin goes down)
    mouth_width: (N,) mouth-corner distance in IOD
    ear:         (N,) eye aspect ratio, mean of both eyes; brow (N,) brow height above the eyes, IOD
    mouth_open:  (N,) inner-lip gap / face height; iod (N,) inter-ocular distance in pixels
    face_aspect: (N,) forehead-chin height over cheek-to-cheek width
    """

    fps: float
    yaw: np.ndarray
    pitch: np.ndarray
    roll: np.ndarray
    nose_drop: np.ndarray
    mouth_width: np.ndarray
    ear: np.ndarray
    brow: np.ndarray
    mouth_open: np.ndarray
    iod: np.ndarray
    face_aspect: np.ndarray

    def __len__(self) -> int:
        return len(self.yaw)


def _frames(seconds: float, fps: float, odd: bool = False) -> int:
    n = max(1, int(round(seconds * fps)))
    return n | 1 if odd else n


def face_signals(track: FaceTrack) -> FaceSignals:
    """Measure every per-frame signal of ``track`` (landmarks (N, 478, 2) px, pose (N, 3) deg)."""
    pts = np.asarray(track.landmarks, dtype=np.float64)[..., :2]
    if pts.ndim != 3 or pts.shape[1] < 468:
        raise ValueError(f"{track.track_id}: landmarks must be (N, 478, 2) face-mesh points, got {pts.shape}")
    eye_r = pts[:, EYE_R_CORNERS].mean(axis=1)
    eye_l = pts[:, EYE_L_CORNERS].mean(axis=1)
    axis = eye_l - eye_r
    iod = np.maximum(np.linalg.norm(axis, axis=1), 1e-6)
    angle = np.arctan2(axis[:, 1], axis[:, 0])
    cos, sin = np.cos(-angle)[:, None], np.sin(-angle)[:, None]
    rel = pts - ((eye_r + eye_l) / 2)[:, None, :]
    # de-rolled, IOD-normalised coordinates: eye line horizontal, y down
    x = (cos * rel[..., 0] - sin * rel[..., 1]) / iod[:, None]
    y = (sin * rel[..., 0] + cos * rel[..., 1]) / iod[:, None]

    def dist(a: int, b: int) -> np.ndarray:
        return np.hypot(x[:, a] - x[:, b], y[:, a] - y[:, b])

    ear = np.mean([sum(dist(u, lo) for u, lo in lids) / (2.0 * dist(*corners))
                   for lids, corners in ((EYE_R_LIDS, EYE_R_CORNERS), (EYE_L_LIDS, EYE_L_CORNERS))], axis=0)
    pose = np.asarray(track.pose, dtype=np.float64)
    return FaceSignals(
        fps=float(track.fps), yaw=pose[:, 0], pitch=pose[:, 1], roll=pose[:, 2],
        nose_drop=y[:, NOSE_TIP], mouth_width=dist(*MOUTH_CORNERS),
        ear=ear, brow=-y[:, list(BROWS)].mean(axis=1),
        mouth_open=np.asarray(track.mouth_open, dtype=np.float64), iod=iod,
        face_aspect=dist(FOREHEAD, CHIN) / np.maximum(dist(*CHEEKS), 1e-6),
    )


def detrend(x: np.ndarray, fps: float, seconds: float) -> np.ndarray:
    """(N,) x minus its rolling median over ``seconds`` (the slow baseline)."""
    return x - median_filter(x, size=_frames(seconds, fps, odd=True), mode="nearest")


def pitch_signal(sig: FaceSignals, cfg: UnderstandingConfig) -> np.ndarray:
    """(N,) detrended pitch in degrees: pose pitch averaged with the nose-drop proxy mapped to degrees."""
    pose = detrend(sig.pitch, sig.fps, cfg.baseline_s)
    nose = detrend(sig.nose_drop, sig.fps, cfg.baseline_s)
    var = float(np.dot(nose, nose))
    if var < 1e-12:
        return pose
    gain = float(np.dot(nose, pose)) / var  # least-squares map of the proxy onto degrees
    if gain <= 0:  # the pose estimate disagrees with the geometry: trust the geometry's shape
        gain = float(np.std(pose) / max(np.std(nose), 1e-9))
    return 0.5 * (pose + gain * nose)


def smile_signal(sig: FaceSignals, cfg: UnderstandingConfig) -> np.ndarray:
    """(N,) mouth widening (IOD) not explained by mouth opening, against the slow baseline."""
    design = np.column_stack([np.ones(len(sig)), sig.mouth_open])
    keep = np.ones(len(sig), dtype=bool)
    coef = np.zeros(2)
    for _ in range(3):  # trimmed least squares: smiles themselves must not bend the fit
        coef, *_ = np.linalg.lstsq(design[keep], sig.mouth_width[keep], rcond=None)
        resid = sig.mouth_width - design @ coef
        keep = resid < np.percentile(resid, 80)
        if keep.sum() < 3:
            break
    resid = sig.mouth_width - design @ coef
    return resid - median_filter(resid, size=_frames(cfg.baseline_s, sig.fps, odd=True), mode="nearest")


def _event(action: str, track: FaceTrack, a: int, b: int, strength: float) -> ActionEvent:
    return ActionEvent(action=action, start_frame=int(track.frames[0]) + a,
                       end_frame=int(track.frames[0]) + b, strength=round(float(strength), 3))


def _hysteresis_runs(score: np.ndarray, high: float, low: float) -> list[tuple[int, int]]:
    """Runs where ``score`` >= low that reach ``high`` somewhere (index [start, end) pairs)."""
    return [(a, b) for a, b in runs(score >= low) if score[a:b].max() >= high]


def _join(spans: list[tuple[int, int]], gap: int) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for a, b in sorted(spans):
        if out and a - out[-1][1] <= gap:
            out[-1] = (out[-1][0], max(b, out[-1][1]))
        else:
            out.append((a, b))
    return out


def detect_nods(
    track: FaceTrack, sig: FaceSignals, cfg: UnderstandingConfig, speaking: np.ndarray | None = None,
) -> list[ActionEvent]:
    """Nods: bumps of the detrended pitch (chin down and back), joined when close together.

    speaking: (N,) bool, frames where the person speaks (a higher threshold applies there).
    """
    fps = sig.fps
    pitch = gaussian_filter1d(pitch_signal(sig, cfg), cfg.nod_smooth_s * fps)
    speaking = np.zeros(len(pitch), dtype=bool) if speaking is None else np.asarray(speaking, dtype=bool)
    bumps = []
    for a, b in _hysteresis_runs(pitch, cfg.nod_deg, 0.5 * cfg.nod_deg):
        peak = a + int(np.argmax(pitch[a:b]))
        needed = cfg.nod_speaking_deg if speaking[peak] else cfg.nod_deg
        if b - a >= _frames(cfg.nod_min_s, fps) and pitch[peak] >= needed:
            bumps.append((a, b))
    events = []
    for a, b in _join(bumps, _frames(cfg.nod_join_s, fps)):
        if b - a <= _frames(cfg.nod_max_s, fps):
            events.append(_event("nod", track, a, b, pitch[a:b].max()))
    return events


def _swings(x: np.ndarray, amp: float) -> list[tuple[int, int]]:
    """(index, sign) of alternating extrema of ``x`` beyond +-amp (one per excursion)."""
    out: list[tuple[int, int]] = []
    for sign in (1, -1):
        for a, b in runs(sign * x >= amp):
            out.append((a + int(np.argmax(sign * x[a:b])), sign))
    return sorted(out)


def detect_shakes(track: FaceTrack, sig: FaceSignals, cfg: UnderstandingConfig) -> list[ActionEvent]:
    """Shakes: at least ``shake_min_swings`` alternating yaw swings in quick succession."""
    fps = sig.fps
    yaw = gaussian_filter1d(sig.yaw, 0.7)
    fast = yaw - gaussian_filter1d(yaw, 0.2 * fps)  # high-pass: keeps ~1-3 Hz swings
    max_gap = _frames(cfg.shake_max_half_s, fps)
    groups: list[list[tuple[int, int]]] = []
    for index, sign in _swings(fast, cfg.shake_deg):
        last = groups[-1][-1] if groups else None
        if last is not None and sign != last[1] and index - last[0] <= max_gap:
            groups[-1].append((index, sign))
        else:
            groups.append([(index, sign)])
    events = []
    half = max(1, max_gap // 2)
    for group in groups:
        if len(group) >= cfg.shake_min_swings:
            a, b = max(0, group[0][0] - half), min(len(fast), group[-1][0] + half)
            events.append(_event("shake", track, a, b, np.abs(fast[a:b]).max()))
    return events


def _sustained(
    track: FaceTrack, action: str, value: np.ndarray, threshold: float, min_s: float, cfg: UnderstandingConfig,
    two_sided: bool,
) -> list[ActionEvent]:
    """Events where |value| (or value) stays beyond ``threshold`` for at least ``min_s``."""
    fps = track.fps
    events = []
    for sign in ((1, -1) if two_sided else (1,)):
        for a, b in _hysteresis_runs(sign * value, threshold, 0.6 * threshold):
            if _frames(min_s, fps) <= b - a <= _frames(cfg.max_event_s, fps):
                events.append(_event(action, track, a, b, np.abs(value[a:b]).max()))
    return events


def detect_actions(
    track: FaceTrack, cfg: UnderstandingConfig | None = None, labels: np.ndarray | None = None,
    signals: FaceSignals | None = None, blinks: bool = True,
) -> list[ActionEvent]:
    """All action events of a track, sorted by start frame (frames absolute).

    labels: (N,) pairing label codes of the track (types.LABELS); speaking frames raise the nod bar.
    """
    cfg = cfg or UnderstandingConfig()
    sig = signals if signals is not None else face_signals(track)
    if labels is not None and len(labels) != len(sig):
        raise ValueError(f"{track.track_id}: {len(labels)} labels for {len(sig)} frames")
    speaking = None if labels is None else np.asarray(labels) == LABELS.index("speak")
    fps = sig.fps
    smooth = max(1.0, 0.06 * fps)
    yaw = gaussian_filter1d(detrend(sig.yaw, fps, cfg.baseline_s), 0.12 * fps)  # shakes average out
    roll = gaussian_filter1d(detrend(sig.roll, fps, cfg.baseline_s), smooth)
    smile = gaussian_filter1d(smile_signal(sig, cfg), smooth)
    shakes = detect_shakes(track, sig, cfg)
    looks = [e for e in _sustained(track, "look_away", yaw, cfg.look_away_deg, cfg.look_away_min_s, cfg, True)
             if not any(_overlap(e, s) > 0.5 for s in shakes)]
    # turning aside often dips the chin too: that pitch change belongs to the look, not a nod
    nods = [e for e in detect_nods(track, sig, cfg, speaking) if not any(_overlap(e, a) > 0.5 for a in looks)]
    events = [*nods, *shakes, *looks,
              *_sustained(track, "tilt", roll, cfg.tilt_deg, cfg.tilt_min_s, cfg, True),
              *_sustained(track, "smile", smile, cfg.smile_rise, cfg.smile_min_s, cfg, False)]
    if blinks:
        events += detect_blinks(track, sig, cfg)
    return sorted(events, key=lambda e: (e.start_frame, e.action))


def _overlap(a: ActionEvent, b: ActionEvent) -> float:
    inter = min(a.end_frame, b.end_frame) - max(a.start_frame, b.start_frame)
    return max(0, inter) / max(1, min(a.end_frame - a.start_frame, b.end_frame - b.start_frame))


def detect_blinks(track: FaceTrack, sig: FaceSignals, cfg: UnderstandingConfig) -> list[ActionEvent]:
    """Blinks: short dips (<= 0.4 s) of the eye aspect ratio below (1 - blink_drop) of its baseline."""
    base = median_filter(sig.ear, size=_frames(2.0, sig.fps, odd=True), mode="nearest")
    rel = 1.0 - sig.ear / np.maximum(base, 1e-6)
    return [_event("blink", track, a, b, rel[a:b].max())
            for a, b in _hysteresis_runs(rel, cfg.blink_drop, 0.5 * cfg.blink_drop)
            if b - a <= _frames(0.4, sig.fps)]


@dataclass
class PerformanceDescriptors:
    """What one track's person does over a clip, summarised (inputs of the captioner).

    events: detected actions (frames absolute); sides: per event +1 towards the person's own
    left, -1 their right, 0 where side does not apply (tilt, look_away have one).
    Rates are per minute; fractions are of clip frames.
    motion_energy: robust mean head angular speed, deg/s. expression_intensity: 0..1.
    head_orientation: median (yaw, pitch, roll) deg. face_aspect: median face height / width.
    speaking_fraction / listening_fraction: from pairing labels (None when not given).
    """

    track_id: str
    fps: float
    start_frame: int
    n_frames: int
    events: list[ActionEvent]
    action_counts: dict[str, int]
    blink_rate_per_min: float
    mouth_activity: float
    smile_fraction: float
    brow_activity: float
    gaze_away_fraction: float
    motion_energy: float
    expression_intensity: float
    head_orientation: tuple[float, float, float]
    face_aspect: float
    speaking_fraction: float | None = None
    listening_fraction: float | None = None
    sides: list[int] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.n_frames / self.fps

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["events"] = [e.to_dict() for e in self.events]
        return out


def _coverage(events: list[ActionEvent], action: str, start: int, n: int) -> float:
    mask = np.zeros(n, dtype=bool)
    for e in events:
        if e.action == action:
            mask[max(0, e.start_frame - start):max(0, e.end_frame - start)] = True
    return float(mask.mean()) if n else 0.0


def describe(
    track: FaceTrack, labels: np.ndarray | None = None, cfg: UnderstandingConfig | None = None,
) -> PerformanceDescriptors:
    """Descriptors of a track (landmarks (N, 478, 2), pose (N, 3)); labels (N,) pairing codes."""
    cfg = cfg or UnderstandingConfig()
    sig = face_signals(track)
    fps, n, start = sig.fps, len(sig), int(track.frames[0])
    events = detect_actions(track, cfg, labels, sig)
    counts = {a: sum(e.action == a for e in events) for a in ("nod", "shake", "smile", "tilt", "look_away", "blink")}
    pose = gaussian_filter1d(np.column_stack([sig.yaw, sig.pitch, sig.roll]), max(1.0, 0.06 * fps), axis=0)
    speed = np.linalg.norm(np.diff(pose, axis=0), axis=1) * fps if n > 1 else np.zeros(1)
    speed = np.minimum(speed, np.percentile(speed, 95))  # tracker glitches do not count as motion
    smile = smile_signal(sig, cfg)
    brow = detrend(sig.brow, fps, cfg.baseline_s)
    moving = local_std(sig.mouth_open, _frames(0.4, fps, odd=True)) > 0.01
    per_frame = np.clip(np.maximum.reduce([smile / 0.12, brow / 0.06, sig.mouth_open / 0.12]), 0.0, 1.0)
    closed = sig.mouth_open <= np.percentile(sig.mouth_open, 50)
    label_codes = None if labels is None else np.asarray(labels)
    side_of = {"tilt": detrend(sig.roll, fps, cfg.baseline_s), "look_away": detrend(sig.yaw, fps, cfg.baseline_s)}
    # roll > 0 (clockwise) and yaw > 0 (towards image right) both lean to the person's own left
    sides = [int(np.sign(side_of[e.action][e.start_frame - start:e.end_frame - start].mean()))
             if e.action in side_of else 0 for e in events]
    log.debug("%s: %s over %.1f s", track.track_id, counts, n / fps)
    return PerformanceDescriptors(
        track_id=track.track_id, fps=fps, start_frame=start, n_frames=n, events=events, action_counts=counts,
        blink_rate_per_min=60.0 * counts["blink"] / max(n / fps, 1e-6),
        mouth_activity=float(moving.mean()),
        smile_fraction=_coverage(events, "smile", start, n),
        brow_activity=float(np.percentile(brow, 90)),
        gaze_away_fraction=_coverage(events, "look_away", start, n),
        motion_energy=float(speed.mean()),
        expression_intensity=float(per_frame.mean()),
        head_orientation=(float(np.median(sig.yaw)), float(np.median(sig.pitch)), float(np.median(sig.roll))),
        face_aspect=float(np.median(sig.face_aspect[closed])),
        speaking_fraction=None if label_codes is None else float(np.mean(label_codes == LABELS.index("speak"))),
        listening_fraction=None if label_codes is None else float(np.mean(label_codes == LABELS.index("listen"))),
        sides=sides,
    )

