"""Online LPM configuration: chunking, constant-memory context, few-step schedule, runtime VAD.

The streaming generator works in chunks of ``chunk_latents`` latent frames. Its attention
context is the reference tokens, ``sink_chunks`` first chunks (kept forever) and a sliding
window of the last ``window_chunks`` chunks, plus the current chunk; so memory and
per-chunk cost stay constant over unbounded streams. Presets follow the Base LPM presets:
the paper's 1 s chunks with 3 sink and 2 window chunks for ``small`` / ``lpm-17b``; ``tiny``
uses short chunks and one sink chunk so it streams in real time on a laptop CPU.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

HISTORY_MODES = ("noisy", "clean")
UPDATE_MODES = ("ode", "fresh")


@dataclass(frozen=True)
class VADConfig:
    """Energy voice-activity detection with hysteresis and hangover, per audio channel.

    A video frame is active when its RMS level rises above ``on_db`` dBFS (or stays above
    ``off_db`` while already active); activity persists ``hangover_frames`` after the last
    active frame so short pauses inside speech do not flip the runtime state.
    """

    on_db: float = -38.0
    off_db: float = -46.0
    hangover_frames: int = 8

    def __post_init__(self) -> None:
        if self.off_db > self.on_db:
            raise ValueError(f"VAD off_db ({self.off_db}) must not exceed on_db ({self.on_db})")
        if self.hangover_frames < 0:
            raise ValueError("hangover_frames must be >= 0")


@dataclass(frozen=True)
class OnlineConfig:
    """Streaming generation settings of an Online LPM.

    backbone_times: the backbone's timesteps (one function evaluation each, decreasing,
    first 1.0); between evaluations the latent moves to the next time along the predicted
    flow (``backbone_update="ode"``, deterministic given the chunk's initial noise) or is
    the clean estimate re-noised with fresh noise (``"fresh"``). The backbone cache keeps the keys/values of the last evaluation (noisy
    history, ``backbone_history="noisy"``) or of one extra evaluation of the chunk's output
    at t = 0 (``"clean"``). The refiner re-noises the backbone's clean estimate to
    ``refiner_t`` and denoises it in one evaluation over its own clean-history cache.
    warmup_chunks: chunks reported as the ``warmup`` runtime state (None: the sink chunks).
    """

    chunk_latents: int = 3
    sink_chunks: int = 1
    window_chunks: int = 2
    backbone_times: tuple[float, ...] = (1.0, 0.5)
    backbone_history: str = "noisy"
    backbone_update: str = "ode"
    refiner: bool = True
    refiner_t: float = 0.25
    warmup_chunks: int | None = None
    vad: VADConfig = field(default_factory=VADConfig)

    def __post_init__(self) -> None:
        if self.chunk_latents < 1:
            raise ValueError("chunk_latents must be >= 1")
        if self.sink_chunks < 0 or self.window_chunks < 0:
            raise ValueError("sink_chunks and window_chunks must be >= 0")
        times = self.backbone_times
        if not times or times[0] != 1.0 or any(b >= a for a, b in zip(times, times[1:])) or times[-1] <= 0.0:
            raise ValueError(f"backbone_times must start at 1.0 and strictly decrease above 0, got {times}")
        if self.backbone_history not in HISTORY_MODES:
            raise ValueError(f"backbone_history must be one of {HISTORY_MODES}, got {self.backbone_history!r}")
        if self.backbone_update not in UPDATE_MODES:
            raise ValueError(f"backbone_update must be one of {UPDATE_MODES}, got {self.backbone_update!r}")
        if not 0.0 < self.refiner_t < 1.0:
            raise ValueError(f"refiner_t must be in (0, 1), got {self.refiner_t}")

    @property
    def backbone_steps(self) -> int:
        return len(self.backbone_times)

    @property
    def context_chunks(self) -> int:
        """Past chunks an attention call can see (sink + window)."""
        return self.sink_chunks + self.window_chunks

    @property
    def max_slot(self) -> int:
        """Position slot of the current chunk once the window is full (RoPE time stays bounded)."""
        return self.sink_chunks + self.window_chunks

    @property
    def warmup(self) -> int:
        return self.sink_chunks if self.warmup_chunks is None else self.warmup_chunks

    def nfe_per_chunk(self) -> int:
        """DiT function evaluations per generated chunk."""
        return self.backbone_steps + (self.backbone_history == "clean") + int(self.refiner)

    def chunk_video_frames(self, temporal_factor: int) -> int:
        """Video frames (and audio frames consumed) per chunk after the first."""
        return self.chunk_latents * temporal_factor

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OnlineConfig:
        data = dict(data)
        vad = VADConfig(**data.pop("vad", {}))
        data["backbone_times"] = tuple(data.get("backbone_times", (1.0, 0.5)))
        return cls(vad=vad, **data)


def _tiny() -> OnlineConfig:
    return OnlineConfig(chunk_latents=3, sink_chunks=1, window_chunks=2)


def _paper() -> OnlineConfig:
    # 6 latents x temporal factor 4 = 24 frames ~ 1 s per chunk; sink 3, window 2 (the paper)
    return OnlineConfig(chunk_latents=6, sink_chunks=3, window_chunks=2)


ONLINE_PRESETS: dict[str, Callable[[], OnlineConfig]] = {"tiny": _tiny, "small": _paper, "lpm-17b": _paper}


def online_preset(name: str, **overrides: Any) -> OnlineConfig:
    """Online settings paired with the Base LPM preset ``name``; keyword overrides replace fields."""
    if name not in ONLINE_PRESETS:
        raise KeyError(f"no online preset for {name!r}; choose one of {list(ONLINE_PRESETS)} or build OnlineConfig")
    cfg = ONLINE_PRESETS[name]()
    return replace(cfg, **overrides) if overrides else cfg
