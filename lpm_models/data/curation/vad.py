"""Voice activity on a video's mixed audio, resampled to the video frame grid.

webrtcvad classifies 30 ms frames of 16 kHz 16-bit PCM; the raw decisions are cleaned up
(short gaps closed, blips dropped, a short hangover added) and then mapped onto video frames,
next to a loudness envelope (dB per video frame) that active-speaker attribution correlates
with mouth motion.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

VAD_RATES = (8000, 16000, 32000, 48000)
VAD_FRAME_MS = (10, 20, 30)


@dataclass(frozen=True)
class VadConfig:
    """Voice-activity thresholds (defaults tuned on the synthetic corpus, see ``accuracy``).

    sample_rate:    rate webrtcvad runs at (8/16/32/48 kHz); audio is resampled to it
    frame_ms:       webrtcvad frame length (10/20/30 ms)
    aggressiveness: webrtcvad mode 0 (permissive) .. 3 (strict)
    fill_gap_s:     non-speech gaps shorter than this inside speech are closed (word pauses)
    min_speech_s:   speech runs shorter than this (after gap filling) are dropped (clicks)
    onset_pad_s:    speech runs are extended this much earlier (webrtcvad reacts late)
    hangover_s:     speech runs are extended this much later (trailing consonants); negative
                    values trim run ends instead (webrtcvad itself holds on ~60 ms past an offset)
    floor_db:       envelope floor in dB relative to the loudest 1% of frames
    min_level_db:   VAD frames quieter than this (dB relative to the loudest 1% of VAD frames) are
                    never speech (webrtcvad flags the first frames while its noise model adapts)
    """

    sample_rate: int = 16000
    frame_ms: int = 30
    aggressiveness: int = 2
    fill_gap_s: float = 0.18
    min_speech_s: float = 0.09
    onset_pad_s: float = 0.0
    hangover_s: float = 0.03
    floor_db: float = -45.0
    min_level_db: float = -45.0

    def __post_init__(self) -> None:
        if self.sample_rate not in VAD_RATES:
            raise ValueError(f"VadConfig.sample_rate must be one of {VAD_RATES}, got {self.sample_rate}")
        if self.frame_ms not in VAD_FRAME_MS:
            raise ValueError(f"VadConfig.frame_ms must be one of {VAD_FRAME_MS}, got {self.frame_ms}")
        if self.aggressiveness not in (0, 1, 2, 3):
            raise ValueError(f"VadConfig.aggressiveness must be 0..3, got {self.aggressiveness}")
        for name in ("fill_gap_s", "min_speech_s", "onset_pad_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"VadConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.floor_db >= 0 or self.min_level_db >= 0:
            raise ValueError(f"VadConfig.floor_db and min_level_db must be negative (dB below the peak), "
                             f"got {self.floor_db}, {self.min_level_db}")


@dataclass
class SpeechActivity:
    """Voice activity of a video's audio on its frame grid (frame i = [i/fps, (i+1)/fps)).

    speech:      (F,) bool   someone speaks during (most of) the frame
    envelope_db: (F,) float  loudness in dB relative to the loudest frames, floored at floor_db
    fps:         video frame rate the arrays are sampled at
    """

    speech: np.ndarray
    envelope_db: np.ndarray
    fps: float

    @property
    def n_frames(self) -> int:
        return len(self.speech)


def to_mono_float(audio: np.ndarray) -> np.ndarray:
    """(S,) float32 in [-1, 1] from mono (S,) or channels-first (C, S) audio, int or float."""
    pcm = np.asarray(audio)
    if pcm.ndim == 2:
        pcm = pcm.mean(axis=0) if pcm.shape[0] < pcm.shape[1] else pcm.mean(axis=1)
    if pcm.ndim != 1:
        raise ValueError(f"audio must be (S,) or (C, S), got shape {np.shape(audio)}")
    if np.issubdtype(pcm.dtype, np.integer):
        pcm = pcm.astype(np.float32) / float(np.iinfo(pcm.dtype).max)
    return np.clip(pcm.astype(np.float32), -1.0, 1.0)


def resample(audio: np.ndarray, sr: int, target: int) -> np.ndarray:
    """(S,) float32 audio at ``sr`` -> (S * target / sr,) float32 at ``target`` (polyphase)."""
    if sr <= 0 or target <= 0:
        raise ValueError(f"sample rates must be positive, got {sr} -> {target}")
    if sr == target:
        return audio.astype(np.float32, copy=False)
    ratio = Fraction(target, sr)
    return resample_poly(audio, ratio.numerator, ratio.denominator).astype(np.float32)


def raw_vad(audio: np.ndarray, sr: int, cfg: VadConfig) -> np.ndarray:
    """(T,) bool webrtcvad decisions per ``cfg.frame_ms`` frame of ``audio`` (S,) at ``sr``."""
    import webrtcvad  # imported here: a compiled extension the module should not need at import

    pcm = resample(to_mono_float(audio), sr, cfg.sample_rate)
    hop = cfg.sample_rate * cfg.frame_ms // 1000
    n = len(pcm) // hop
    ints = (np.clip(pcm[: n * hop], -1.0, 1.0) * 32767.0).astype("<i2")
    vad = webrtcvad.Vad(cfg.aggressiveness)
    voiced = np.fromiter(
        (vad.is_speech(ints[i * hop:(i + 1) * hop].tobytes(), cfg.sample_rate) for i in range(n)),
        dtype=bool, count=n,
    )
    level = 10.0 * np.log10(np.mean(pcm[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1) + 1e-12)
    loud = float(np.percentile(level, 99)) if n else 0.0
    return voiced & (level > loud + cfg.min_level_db)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) index pairs of the True runs of a (T,) bool mask."""
    padded = np.concatenate([[False], np.asarray(mask, dtype=bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]


def close_gaps(mask: np.ndarray, max_gap: int) -> np.ndarray:
    """Fill False runs of at most ``max_gap`` samples that lie between two True runs."""
    out = np.asarray(mask, dtype=bool).copy()
    spans = runs(out)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        if start - end <= max_gap:
            out[end:start] = True
    return out


def drop_short(mask: np.ndarray, min_len: int) -> np.ndarray:
    """Clear True runs shorter than ``min_len`` samples."""
    out = np.asarray(mask, dtype=bool).copy()
    for a, b in runs(out):
        if b - a < min_len:
            out[a:b] = False
    return out


def pad_runs(mask: np.ndarray, before: int, after: int) -> np.ndarray:
    """Extend every True run ``before`` samples earlier and ``after`` samples later.

    A negative ``after`` trims run ends instead, never below one sample per run.
    """
    out = np.zeros(len(mask), dtype=bool)
    for a, b in runs(mask):
        out[max(0, a - before):min(len(mask), max(a + 1, b + after))] = True
    return out


def smooth_vad(raw: np.ndarray, cfg: VadConfig) -> np.ndarray:
    """(T,) bool cleaned webrtcvad decisions: gaps closed, blips dropped, onset/hangover padded."""
    frame_s = cfg.frame_ms / 1000.0
    mask = close_gaps(raw, int(round(cfg.fill_gap_s / frame_s)))
    mask = drop_short(mask, max(1, int(round(cfg.min_speech_s / frame_s))))
    return pad_runs(mask, int(round(cfg.onset_pad_s / frame_s)), int(round(cfg.hangover_s / frame_s)))


def frame_envelope(audio: np.ndarray, sr: int, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) RMS of ``audio`` (S,) over each video frame [i/fps, (i+1)/fps); 0 past the end."""
    edges = np.round(np.arange(n_frames + 1) * sr / fps).astype(np.int64)
    edges = np.clip(edges, 0, len(audio))
    sq = np.concatenate([[0.0], np.cumsum(audio.astype(np.float64) ** 2)])
    count = np.maximum(np.diff(edges), 1)
    return np.sqrt(np.maximum(sq[edges[1:]] - sq[edges[:-1]], 0.0) / count)


def to_frames(mask: np.ndarray, frame_s: float, fps: float, n_frames: int) -> np.ndarray:
    """(n_frames,) bool: video frame i is speech if the VAD frame under its centre is."""
    centres = (np.arange(n_frames) + 0.5) / fps
    index = np.floor(centres / frame_s).astype(np.int64)
    valid = index < len(mask)
    out = np.zeros(n_frames, dtype=bool)
    out[valid] = mask[index[valid]]
    return out


def speech_activity(
    audio: np.ndarray, sr: int, fps: float, n_frames: int, cfg: VadConfig | None = None,
) -> SpeechActivity:
    """Voice activity and loudness of ``audio`` (S,) at ``sr`` on ``n_frames`` video frames at ``fps``.

    The audio is taken to start at video frame 0 (as demuxed from the same file).
    """
    cfg = cfg or VadConfig()
    if fps <= 0 or n_frames < 0:
        raise ValueError(f"need fps > 0 and n_frames >= 0, got fps={fps}, n_frames={n_frames}")
    pcm = to_mono_float(audio)
    if len(pcm) < sr * cfg.frame_ms // 1000:
        raise ValueError(f"audio has {len(pcm)} samples at {sr} Hz: shorter than one {cfg.frame_ms} ms VAD frame")
    mask = smooth_vad(raw_vad(pcm, sr, cfg), cfg)
    speech = to_frames(mask, cfg.frame_ms / 1000.0, fps, n_frames)
    rms = frame_envelope(pcm, sr, fps, n_frames)
    db = 20.0 * np.log10(rms + 1e-8)
    ref = float(np.percentile(db, 99)) if n_frames else 0.0
    envelope = np.maximum(db - ref, cfg.floor_db)
    log.debug("vad: %.1f%% of %d frames are speech", 100.0 * speech.mean() if n_frames else 0.0, n_frames)
    return SpeechActivity(speech=speech, envelope_db=envelope.astype(np.float32), fps=float(fps))
