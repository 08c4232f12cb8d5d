"""Speech synthesis with espeak-ng: one distinct, reproducible voice per person.

espeak-ng runs as a subprocess writing a WAV to stdout; the samples are resampled to the
corpus rate and trimmed of the synthesizer's leading/trailing silence so that utterance
times in the ground truth match where the voice really is.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import subprocess
from dataclasses import asdict, dataclass
from fractions import Fraction

import numpy as np
from scipy.signal import resample_poly

log = logging.getLogger(__name__)

ESPEAK = "espeak-ng"
ESPEAK_RATE = 22050

# Accents (espeak-ng language voices) and voice variants (espeak-ng-data/voices/!v) that
# sound like a person rather than a robot; gender of the variant in the second field.
ACCENTS: tuple[str, ...] = (
    "en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-us-nyc",
    "en-gb-x-gbclan", "en-gb-x-gbcwmd",
)
VARIANTS: tuple[tuple[str, str], ...] = (
    ("m1", "male"), ("m2", "male"), ("m3", "male"), ("m4", "male"), ("m5", "male"),
    ("m6", "male"), ("m7", "male"), ("f1", "female"), ("f2", "female"), ("f3", "female"),
    ("f4", "female"), ("f5", "female"), ("klatt", "male"), ("klatt3", "male"),
    ("klatt4", "female"),
)


@dataclass(frozen=True)
class Voice:
    """espeak-ng parameters of one person's voice."""

    accent: str
    variant: str
    gender: str
    pitch: int  # espeak -p, 0..99
    speed: int  # espeak -s, words per minute
    word_gap: int  # espeak -g, extra pause between words in units of 10 ms
    gain: float  # linear gain applied to the person's track in the mix

    @property
    def name(self) -> str:
        return f"{self.accent}+{self.variant}"

    def to_dict(self) -> dict:
        return asdict(self) | {"name": self.name}


def espeak_available() -> bool:
    """True when the espeak-ng executable is on PATH."""
    return shutil.which(ESPEAK) is not None


def _require_espeak() -> str:
    path = shutil.which(ESPEAK)
    if path is None:
        raise FileNotFoundError(
            "espeak-ng is not installed or not on PATH; install it "
            "(Debian/Ubuntu: `apt-get install espeak-ng`, macOS: `brew install espeak-ng`)"
        )
    return path


def voice_for(key: str, seed: int) -> Voice:
    """A reproducible voice derived from a stable key (e.g. an identity id) and a seed."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    variant, gender = VARIANTS[int(rng.integers(len(VARIANTS)))]
    return Voice(
        accent=ACCENTS[int(rng.integers(len(ACCENTS)))],
        variant=variant,
        gender=gender,
        pitch=int(rng.integers(25, 76)),
        speed=int(rng.integers(145, 191)),
        word_gap=int(rng.integers(0, 3)),
        gain=float(np.round(rng.uniform(0.7, 1.0), 3)),
    )


def voices_distinct(a: Voice, b: Voice) -> bool:
    """Whether two voices are told apart easily (different variant or clearly other pitch)."""
    return a.variant != b.variant or abs(a.pitch - b.pitch) >= 20


def _parse_wav(data: bytes) -> np.ndarray:
    """int16 mono samples of a RIFF/WAVE byte string (streamed headers carry bogus sizes)."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not return a WAV stream; check the espeak-ng install")
    pos = 12
    while pos + 8 <= len(data):
        chunk, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if chunk == b"data":
            body = data[pos + 8:]
            body = body[: len(body) - len(body) % 2]
            return np.frombuffer(body, dtype="<i2")
        pos += 8 + size
    raise RuntimeError("espeak-ng WAV stream has no data chunk")


def synthesize(text: str, voice: Voice, sample_rate: int = 16000) -> np.ndarray:
    """Speak ``text`` with ``voice``: float32 mono samples in [-1, 1] at ``sample_rate``.

    Leading and trailing silence is trimmed; the result is never empty for non-empty text.
    """
    if not text.strip():
        raise ValueError("cannot synthesize empty text")
    cmd = [
        _require_espeak(), "-v", voice.name, "-p", str(voice.pitch), "-s", str(voice.speed),
        "-g", str(voice.word_gap), "-z", "--stdout", "--stdin",
    ]
    proc = subprocess.run(cmd, input=text.encode(), capture_output=True, check=False, timeout=60)
    if proc.returncode != 0:
        raise RuntimeError(
            f"espeak-ng failed ({proc.returncode}) for voice {voice.name}: "
            f"{proc.stderr.decode(errors='replace').strip()}"
        )
    pcm = _parse_wav(proc.stdout).astype(np.float32) / 32768.0
    if sample_rate != ESPEAK_RATE:
        ratio = Fraction(sample_rate, ESPEAK_RATE)
        pcm = resample_poly(pcm, ratio.numerator, ratio.denominator).astype(np.float32)
    return trim_silence(pcm, sample_rate)


def trim_silence(pcm: np.ndarray, sample_rate: int, threshold_db: float = -45.0) -> np.ndarray:
    """Cut leading/trailing samples whose 10 ms RMS is below ``threshold_db`` of the peak RMS."""
    hop = max(1, sample_rate // 100)
    n = len(pcm) // hop
    if n == 0:
        return pcm
    rms = np.sqrt(np.mean(pcm[: n * hop].reshape(n, hop) ** 2, axis=1) + 1e-12)
    active = np.flatnonzero(20 * np.log10(rms / rms.max()) > threshold_db)
    if active.size == 0:
        return pcm
    return pcm[active[0] * hop: (active[-1] + 1) * hop].copy()


def frame_loudness(pcm: np.ndarray, sample_rate: int, fps: int, n_frames: int) -> np.ndarray:
    """RMS loudness of each video frame's audio span [t/fps, (t+1)/fps): (n_frames,) float32."""
    spf = sample_rate / fps
    out = np.zeros(n_frames, dtype=np.float32)
    for t in range(n_frames):
        a, b = int(round(t * spf)), int(round((t + 1) * spf))
        seg = pcm[a:b]
        if seg.size:
            out[t] = float(np.sqrt(np.mean(seg.astype(np.float64) ** 2)))
    return out
