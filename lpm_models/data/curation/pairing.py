"""Speak / listen pairing: who speaks when, per face track, and the matching audio variants.

1. Voice activity on the video's mixed audio (``vad``): webrtcvad at 16 kHz in 30 ms frames,
   cleaned up (gaps closed, blips dropped, the detector's own hangover trimmed, a level floor),
   on the video frame grid, plus a loudness envelope in dB per video frame.
2. Active-speaker attribution. On every speech frame each on-screen face is a candidate when
   - its mouth opening correlates with the envelope (Pearson r over a ~1 s window, best over a
     few frames of A/V lag and over centred / trailing / leading window positions, so a window
     straddling a turn change still finds the side that holds only one speaker),
   - its mouth moves (local std of the opening) and is open somewhere nearby.
   With several faces, a candidate whose r trails the best one's by more than a margin is
   dropped (a mouth moving silently next to a clearly talking one); true overlaps keep both.
   Speech that no visible face claims belongs to an off-camera interlocutor: in single-camera
   footage, the person we hear but do not see.
3. Labels per track frame: speak (own speech), listen (speech that is not this person's),
   idle (nobody speaks).
4. Audio variants: ``self_audio`` is the mixed audio gated (soft 10 ms edges) to the person's
   speaking frames, ``other_audio`` gated to frames where someone else speaks; on overlapping
   speech both gates are open and both hold the mix. True source separation (a speech
   separation model, ideally conditioned on the speaker's face) would replace gating there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d, uniform_filter1d

from lpm_models.data.curation.config import SyncConfig
from lpm_models.data.curation.sync import measure_sync
from lpm_models.data.curation.types import ClipLabels, FaceTrack
from lpm_models.data.curation.vad import SpeechActivity, VadConfig, close_gaps, drop_short, speech_activity

log = logging.getLogger(__name__)

IDLE, SPEAK, LISTEN = 0, 1, 2  # codes of types.LABELS


@dataclass(frozen=True)
class PairingConfig:
    """Thresholds of speak/listen pairing (defaults tuned on the synthetic corpus, see ``accuracy``).

    vad_*:               voice activity, see ``vad.VadConfig``
    window_s:            half width of the window the mouth/audio correlation is computed over
    activity_window_s:   window of the local std of mouth opening (mouth activity)
    max_lag_frames:      correlation is the best over lags in [-max, +max] frames (A/V offset)
    min_correlation:     a face speaks only where its windowed correlation reaches this
    min_mouth_activity:  ... and its mouth moves: local std of mouth opening (face heights)
    min_mouth_open:      ... and the mouth is open (above the track's closed level, the 10th
                         percentile, in face heights) somewhere within +-open_window_s / 2
    competitor_margin:   with several faces, one speaks only if its correlation is within this
                         margin of the best face's on that frame
    fill_gap_s:          a face's speaking gaps up to this long inside speech are closed
    min_speak_s:         a face's speaking runs shorter than this are dropped
    fade_ms:             raised-cosine ramps at the edges of audio gates (no clicks)
    sync_max_offset_frames, sync_min_speaking_s: A/V sync estimate on the speaking frames
    """

    vad_aggressiveness: int = 2
    vad_frame_ms: int = 30
    vad_fill_gap_s: float = 0.09
    vad_min_speech_s: float = 0.06
    vad_onset_pad_s: float = 0.0
    vad_hangover_s: float = -0.06
    vad_floor_db: float = -45.0
    vad_min_level_db: float = -45.0
    window_s: float = 0.5
    activity_window_s: float = 0.4
    max_lag_frames: int = 2
    min_correlation: float = 0.3
    min_mouth_activity: float = 0.008
    min_mouth_open: float = 0.02
    open_window_s: float = 0.12
    competitor_margin: float = 0.3
    fill_gap_s: float = 0.2
    min_speak_s: float = 0.12
    fade_ms: float = 10.0
    sync_max_offset_frames: int = 10
    sync_min_speaking_s: float = 2.0

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.activity_window_s <= 0:
            raise ValueError("PairingConfig.window_s and activity_window_s must be > 0")
        if self.max_lag_frames < 0:
            raise ValueError(f"PairingConfig.max_lag_frames must be >= 0, got {self.max_lag_frames}")
        if not -1.0 <= self.min_correlation <= 1.0:
            raise ValueError(f"PairingConfig.min_correlation must be within [-1, 1], got {self.min_correlation}")
        self.vad()  # validates the vad_* fields

    def vad(self) -> VadConfig:
        """The voice-activity section as a ``VadConfig``."""
        return VadConfig(aggressiveness=self.vad_aggressiveness, frame_ms=self.vad_frame_ms,
                         fill_gap_s=self.vad_fill_gap_s, min_speech_s=self.vad_min_speech_s,
                         onset_pad_s=self.vad_onset_pad_s, hangover_s=self.vad_hangover_s,
                         floor_db=self.vad_floor_db, min_level_db=self.vad_min_level_db)


@dataclass
class ShotSpeakers:
    """Attribution over a frame span [first_frame, first_frame + F) of one shot.

    activity:  voice activity and envelope over the span
    speaking:  (K, F) bool  track k speaks (False outside the track's frames)
    off_camera:(F,) bool    speech no visible face claims
    scores:    (K, F) float windowed mouth/audio correlation (NaN outside the track)
    mouth_activity: (K, F) float local std of mouth opening (NaN outside the track)
    """

    first_frame: int
    activity: SpeechActivity
    speaking: np.ndarray
    off_camera: np.ndarray
    scores: np.ndarray
    mouth_activity: np.ndarray


def _windowed_corr(x: np.ndarray, y: np.ndarray, width: int, shift: int = 0) -> np.ndarray:
    """(N,) Pearson r of x and y (N,) over a window of ``width`` frames (NaN if flat).

    shift moves the window: 0 centred, -width // 2 ending at the frame, +width // 2 starting at it.
    """
    index = np.clip(np.arange(len(x)) + shift, 0, max(len(x) - 1, 0))  # window centre per frame

    def mean(a: np.ndarray) -> np.ndarray:
        return uniform_filter1d(a, width, mode="nearest")[index]

    mx, my = mean(x), mean(y)
    cov = mean(x * y) - mx * my
    vx = np.maximum(mean(x * x) - mx * mx, 0.0)
    vy = np.maximum(mean(y * y) - my * my, 0.0)
    denom = np.sqrt(vx * vy)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 1e-12, cov / denom, np.nan)


def local_std(x: np.ndarray, width: int) -> np.ndarray:
    """(N,) standard deviation of x (N,) over a centred window of ``width`` frames."""
    mean = uniform_filter1d(x, width, mode="nearest")
    sq = uniform_filter1d(x * x, width, mode="nearest")
    return np.sqrt(np.maximum(sq - mean * mean, 0.0))


def mouth_scores(
    mouth_open: np.ndarray, envelope_db: np.ndarray, fps: float, cfg: PairingConfig,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame (correlation, activity, openness) of a mouth (N,) against the envelope (N,).

    Correlation is the best windowed Pearson r over lags in [-max_lag, +max_lag] frames;
    openness the largest opening above the closed level within the open window.
    """
    mouth = mouth_open.astype(np.float64)
    env = envelope_db.astype(np.float64)
    width = max(3, int(round(2 * cfg.window_s * fps)) | 1)
    best = np.full(len(mouth), -np.inf)
    for lag in range(-cfg.max_lag_frames, cfg.max_lag_frames + 1):
        shifted = np.roll(env, -lag)  # audio lagging the picture by ``lag`` frames
        if lag > 0:
            shifted[-lag:] = env[-1]
        elif lag < 0:
            shifted[:-lag] = env[0]
        # centred, trailing and leading windows: a window straddling a turn change still has
        # a one-sided neighbour that holds only the new (or the old) speaker
        for shift in (0, -(width // 2), width // 2):
            r = _windowed_corr(mouth, shifted, width, shift)
            best = np.fmax(best, np.nan_to_num(r, nan=-np.inf))
    best[~np.isfinite(best)] = np.nan
    activity = local_std(mouth, max(3, int(round(cfg.activity_window_s * fps)) | 1))
    closed = float(np.percentile(mouth, 10)) if len(mouth) else 0.0
    openness = maximum_filter1d(mouth - closed, max(1, int(round(cfg.open_window_s * fps)) | 1), mode="nearest")
    return best, activity, openness


def _clean_runs(mask: np.ndarray, speech: np.ndarray, fps: float, cfg: PairingConfig) -> np.ndarray:
    """Close short gaps (inside speech only) and drop blips of a (F,) speaking mask."""
    closed = close_gaps(mask, int(round(cfg.fill_gap_s * fps))) & speech
    return drop_short(closed, max(1, int(round(cfg.min_speak_s * fps))))


def _shot_span(tracks: Sequence[FaceTrack]) -> tuple[int, int, float]:
    if not tracks:
        raise ValueError("attribute_speakers needs at least one face track")
    fps = tracks[0].fps
    if any(abs(t.fps - fps) > 1e-6 for t in tracks):
        raise ValueError(f"tracks of one shot must share a frame rate, got {sorted({t.fps for t in tracks})}")
    return min(int(t.frames[0]) for t in tracks), max(int(t.frames[-1]) + 1 for t in tracks), fps


def _audio_span(audio: np.ndarray, sr: int, fps: float, first: int, end: int, audio_start_s: float) -> np.ndarray:
    """(S,) samples of the video frames [first, end) from audio whose sample 0 is at ``audio_start_s``."""
    a = int(round((first / fps - audio_start_s) * sr))
    b = int(round((end / fps - audio_start_s) * sr))
    if a < 0 or a >= len(audio):
        raise ValueError(f"audio (starting at {audio_start_s:.3f} s, {len(audio) / sr:.2f} s long) does not "
                         f"cover frame {first} at {fps} fps; pass the video's audio and its start time")
    out = np.zeros(b - a, dtype=np.float32)
    chunk = audio[a:min(b, len(audio))]
    out[:len(chunk)] = chunk
    return out


def attribute_speakers(
    tracks: Sequence[FaceTrack], audio: np.ndarray, sr: int, cfg: PairingConfig | None = None,
    audio_start_s: float = 0.0,
) -> ShotSpeakers:
    """Who speaks on each frame of the span covered by ``tracks`` (faces of one shot).

    audio: (S,) mono mixed audio of the video at ``sr``; sample 0 at ``audio_start_s`` seconds.
    """
    cfg = cfg or PairingConfig()
    first, end, fps = _shot_span(tracks)
    n = end - first
    pcm = _audio_span(np.asarray(audio, dtype=np.float32).reshape(-1), sr, fps, first, end, audio_start_s)
    activity = speech_activity(pcm, sr, fps, n, cfg.vad())
    candidate = np.zeros((len(tracks), n), dtype=bool)
    scores = np.full((len(tracks), n), np.nan)
    moving = np.full((len(tracks), n), np.nan)
    for k, track in enumerate(tracks):
        idx = track.frames.astype(np.int64) - first
        r, act, opened = mouth_scores(track.mouth_open, activity.envelope_db[idx], fps, cfg)
        scores[k, idx], moving[k, idx] = r, act
        candidate[k, idx] = activity.speech[idx] & (np.nan_to_num(r, nan=-1.0) >= cfg.min_correlation) \
            & (act >= cfg.min_mouth_activity) & (opened >= cfg.min_mouth_open)
    # a face whose correlation trails the best candidate's by more than the margin is not the
    # speaker (a silently moving mouth next to a clearly talking one); overlaps keep both
    best = np.max(np.where(candidate, np.nan_to_num(scores, nan=-1.0), -1.0), axis=0)
    speaking = np.zeros_like(candidate)
    for k, track in enumerate(tracks):
        idx = track.frames.astype(np.int64) - first
        raw = candidate[k, idx] & (scores[k, idx] >= best[idx] - cfg.competitor_margin)
        speaking[k, idx] = _clean_runs(raw, activity.speech[idx], fps, cfg)
    off_camera = activity.speech & ~speaking.any(axis=0)
    log.debug("attribution over %d frames: speech %.0f%%, off-camera %.0f%%, per track %s", n,
              100 * activity.speech.mean(), 100 * off_camera.mean(), [f"{100 * s.mean():.0f}%" for s in speaking])
    return ShotSpeakers(first, activity, speaking, off_camera, scores, moving)


def gate_audio(audio: np.ndarray, sr: int, fps: float, mask: np.ndarray, fade_ms: float) -> np.ndarray:
    """(S,) audio kept where the per-frame ``mask`` (N,) is True, zero elsewhere, with soft edges.

    audio covers exactly the N frames (S ~= N * sr / fps).
    """
    edges = np.round(np.arange(len(mask) + 1) * sr / fps).astype(np.int64)
    gate = np.zeros(len(audio), dtype=np.float32)
    for i in np.flatnonzero(mask):
        gate[edges[i]:min(edges[i + 1], len(audio))] = 1.0
    ramp = max(1, int(round(fade_ms * sr / 1000.0)))
    if ramp > 1:
        kernel = np.hanning(2 * ramp + 1)
        gate = np.convolve(gate, kernel / kernel.sum(), mode="same").astype(np.float32)
    return (audio * gate).astype(np.float32)


def labels_for(speaking: np.ndarray, speech: np.ndarray) -> np.ndarray:
    """(N,) uint8 label codes from a track's own speaking (N,) and the speech mask (N,)."""
    labels = np.full(len(speech), IDLE, dtype=np.uint8)
    labels[speech] = LISTEN
    labels[speaking] = SPEAK
    return labels


def clip_labels(
    shot: ShotSpeakers, k: int, track: FaceTrack, audio: np.ndarray, sr: int, cfg: PairingConfig,
    audio_start_s: float = 0.0,
) -> ClipLabels:
    """ClipLabels of track ``k`` of an attributed shot; audio as given to ``attribute_speakers``."""
    idx = track.frames.astype(np.int64) - shot.first_frame
    own = shot.speaking[k, idx]
    others = np.delete(shot.speaking, k, axis=0).any(axis=0)[idx] | shot.off_camera[idx]
    speech = shot.activity.speech[idx]
    labels = labels_for(own, speech)
    fps = track.fps
    pcm = _audio_span(np.asarray(audio, dtype=np.float32).reshape(-1), sr, fps, int(track.frames[0]),
                      int(track.frames[-1]) + 1, audio_start_s)
    sync_cfg = SyncConfig(max_offset_frames=cfg.sync_max_offset_frames, min_speaking_s=cfg.sync_min_speaking_s)
    sync = measure_sync(track.mouth_open, pcm, sr, fps, sync_cfg, speaking=own)
    return ClipLabels(
        track_id=track.track_id, labels=labels,
        self_audio=gate_audio(pcm, sr, fps, own, cfg.fade_ms),
        other_audio=gate_audio(pcm, sr, fps, others & speech, cfg.fade_ms),
        sample_rate=sr, sync_offset=sync.offset_frames if sync.assessable else 0,
        sync_confidence=float(sync.confidence) if sync.assessable else 0.0,
    )


def pair_track(
    track: FaceTrack, audio: np.ndarray, sr: int, other_tracks: Sequence[FaceTrack] = (),
    cfg: PairingConfig | None = None, audio_start_s: float = 0.0,
) -> ClipLabels:
    """Per-frame speak/listen/idle labels and gated audio of ``track``.

    audio: (S,) mono mixed audio of the video at ``sr`` (sample 0 at ``audio_start_s`` s);
    other_tracks: the other faces of the same shot (none in single-camera footage).
    """
    cfg = cfg or PairingConfig()
    tracks = [track, *[t for t in other_tracks if t.track_id != track.track_id]]
    shot = attribute_speakers(tracks, audio, sr, cfg, audio_start_s)
    return clip_labels(shot, 0, track, audio, sr, cfg, audio_start_s)


def pair_shot(
    tracks: Sequence[FaceTrack], audio: np.ndarray, sr: int, cfg: PairingConfig | None = None,
    audio_start_s: float = 0.0,
) -> list[ClipLabels]:
    """``pair_track`` for every track of one shot, attributing speech once."""
    cfg = cfg or PairingConfig()
    shot = attribute_speakers(tracks, audio, sr, cfg, audio_start_s)
    return [clip_labels(shot, k, t, audio, sr, cfg, audio_start_s) for k, t in enumerate(tracks)]
