"""Stream local files through a served Online LPM and write the result as an MP4 (the `lpm stream` job)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from serving.client import StreamClient
from serving.conversation import StreamReport, run_stream
from serving.media import Mp4Writer, fit_image, read_audio, read_image

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamJob:
    """One conversation: a character (image + references, prompt), two speech tracks, an output file.

    speech: the character's own speech (drives speaking); user_speech: the user's (drives
    listening; None = silence). max_seconds: cut both tracks (None = the whole speech file).
    """

    url: str
    model: str
    image: Path
    speech: Path
    out: Path
    version: str = ""
    references: tuple[Path, ...] = ()
    prompt: str | None = None
    prompts: dict[int, str] = field(default_factory=dict)
    user_speech: Path | None = None
    realtime: bool = False
    seed: int | None = None
    max_seconds: float | None = None


@dataclass(frozen=True)
class StreamResult:
    report: StreamReport
    info: dict[str, Any]
    out: Path
    frames_written: int


def load_tracks(job: StreamJob, sample_rate: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Both speech tracks decoded, resampled to the model's rate and cut to ``max_seconds``."""
    limit = None if job.max_seconds is None else int(job.max_seconds * sample_rate)
    speech = read_audio(job.speech, sample_rate)[:limit]
    if speech.size == 0:
        raise ValueError(f"{job.speech} decodes to no audio")
    user = read_audio(job.user_speech, sample_rate)[:limit] if job.user_speech else None
    return speech, user


def stream_to_mp4(job: StreamJob, progress: Callable[[StreamReport, int], None] | None = None) -> StreamResult:
    """Open a session, stream the tracks, write frames + the character's speech to ``job.out``."""
    image = read_image(job.image)
    references = [fit_image(read_image(p), image.shape[:2]) for p in job.references]
    with StreamClient(job.url, job.model, job.version) as client:
        info = client.open(image, references, prompt=job.prompt, seed=job.seed)
        rate = int(info["sample_rate"])
        speech, user = load_tracks(job, rate)
        total = -(-speech.size // int(info["chunk_samples"]))
        log.info("session %d on %s v%s: %d chunks of %.2f s", client.sequence_id, info["model"], info["version"],
                 total, info["chunk_samples"] / rate)
        writer = Mp4Writer(job.out, int(info["fps"]), audio_rate=rate)
        try:
            report = run_stream(client, speech, user, realtime=job.realtime, prompts=job.prompts,
                                on_reply=lambda reply: writer.add(reply.video),
                                progress=(lambda r: progress(r, total)) if progress else None)
        finally:
            frames = writer.frames
            if frames:
                writer.close(speech)
            else:
                writer.abort()
    if not frames:
        raise RuntimeError(f"the server returned no frames ({len(report.errors)} errors: {report.errors[:3]})")
    return StreamResult(report=report, info=info, out=job.out, frames_written=frames)
