"""The systems LPM-Bench evaluates: each turns a case into a video of the case's length.

- :class:`GroundTruthSystem`  the held-out truth performance itself (the upper bound)
- :class:`StillSystem`        the reference image repeated (the no-motion baseline)
- :class:`BaseLPMSystem`      Base LPM in process: Euler sampling with chunk-wise continuation
- :class:`OnlineLPMSystem`    Online LPM in process: the streaming engine, chunk by chunk
- :class:`TritonSystem`       Online LPM served by Triton, through ``serving.client`` (imported
  lazily inside :meth:`TritonSystem.generate`: the one place quality touches serving), with latency

Model systems get loaded models (or local files); fetching and verifying weights from the object
store is the caller's job (``orchestration.bench`` uses ``serving.loader`` / ``serving.store``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import cv2
import numpy as np

from quality.bench.cases import BenchCase
from quality.bench.features import VideoSource

if TYPE_CHECKING:
    from lpm_models.base.model import BaseLPM
    from lpm_models.online.engine import OnlineEngine
    from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)

NEUTRAL_CAPTION = "a person in a video call, listening and talking"


@dataclass
class Generated:
    """A system's output for one case: frames (N, H, W, 3) uint8 or a video file, and timings."""

    frames: np.ndarray | None = None
    video: Path | None = None
    seconds: float = 0.0
    latency: dict[str, Any] = field(default_factory=dict)


class System(Protocol):
    """Something that performs a case. ``name``: ground_truth | still | base | online | triton."""

    name: str
    label: str
    info: dict[str, Any]

    def generate(self, case: BenchCase) -> Generated: ...


def fit_frames(frames: np.ndarray, n_frames: int, size: tuple[int, int]) -> np.ndarray:
    """(F, h, w, 3) -> exactly (n_frames, H, W, 3): cut, padded with the last frame, resized to (H, W)."""
    if len(frames) == 0:
        raise ValueError("the system produced no frames")
    if len(frames) < n_frames:
        log.warning("system produced %d frames for a %d-frame case; repeating the last", len(frames), n_frames)
        frames = np.concatenate([frames, np.repeat(frames[-1:], n_frames - len(frames), axis=0)])
    frames = frames[:n_frames]
    if frames.shape[1:3] != size:
        frames = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])
    return np.ascontiguousarray(frames)


def active_prompt(case: BenchCase, start: int, end: int) -> str | None:
    """Text of the prompt overlapping frames [start, end) the most (None: no prompt there)."""
    best, overlap = None, 0
    for p in case.prompts:
        o = min(end, p.end_frame) - max(start, p.start_frame)
        if o > overlap:
            best, overlap = p.text or p.action, o
    return best


def case_caption(case: BenchCase) -> str:
    """One caption for a whole case (Base LPM takes one text): its prompts in order, else neutral."""
    texts = list(dict.fromkeys(p.text or p.action for p in sorted(case.prompts, key=lambda p: p.start_frame)))
    return ", then ".join(texts) if texts else NEUTRAL_CAPTION


class GroundTruthSystem:
    """The case's held-out truth performance (MP4 with the character's speech)."""

    name, label = "ground_truth", "ground truth"

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def generate(self, case: BenchCase) -> Generated:
        return Generated(video=case.truth_video)


class StillSystem:
    """The reference image held for the whole case."""

    name, label = "still", "still image"

    def __init__(self) -> None:
        self.info: dict[str, Any] = {}

    def generate(self, case: BenchCase) -> Generated:
        t0 = time.perf_counter()
        frames = np.repeat(case.reference_image[None], case.n_frames, axis=0)
        return Generated(frames=frames, seconds=time.perf_counter() - t0)


class OnlineLPMSystem:
    """Online LPM in process: one engine session per case, both audio channels streamed chunk by chunk."""

    name = "online"

    def __init__(self, engine: "OnlineEngine", label: str = "Online LPM", seed: int = 0,
                 info: dict[str, Any] | None = None) -> None:
        self.engine, self.label, self.seed, self.info = engine, label, seed, dict(info or {})

    def generate(self, case: BenchCase) -> Generated:
        eng, audio = self.engine, case.audio
        n, step = eng.chunk_samples, eng.chunk_frames
        chunks = -(-(case.n_frames + 1) // step)  # the video runs tc - 1 frames behind the audio
        speak = np.zeros(chunks * n, np.float32)
        listen = np.zeros(chunks * n, np.float32)
        speak[: min(len(audio.speak), len(speak))] = audio.speak[: len(speak)]
        if audio.listen is not None:
            listen[: min(len(audio.listen), len(listen))] = audio.listen[: len(listen)]
        t0 = time.perf_counter()
        session = eng.start(case.reference_image, prompt=active_prompt(case, 0, step) or NEUTRAL_CAPTION,
                            seed=self.seed)
        out, latencies = [], []
        try:
            for k in range(chunks):
                c0 = time.perf_counter()
                prompt = active_prompt(case, k * step, (k + 1) * step) or NEUTRAL_CAPTION
                out.append(eng.step(session, speak[k * n:(k + 1) * n], listen[k * n:(k + 1) * n], prompt=prompt))
                latencies.append(time.perf_counter() - c0)
        finally:
            eng.close(session)
        frames = fit_frames(np.concatenate(out), case.n_frames, case.reference_image.shape[:2])
        chunk_s = step / case.fps
        return Generated(frames=frames, seconds=time.perf_counter() - t0,
                         latency={"chunk_p50_s": float(np.percentile(latencies, 50)),
                                  "chunk_p99_s": float(np.percentile(latencies, 99)),
                                  "rtf": float(np.mean(latencies)) / chunk_s})


class BaseLPMSystem:
    """Base LPM in process: the whole case sampled by chunk-wise continuation, then VAE-decoded.

    steps: Euler steps per chunk (None: the preset's ``sampler.steps``; fewer is faster and worse).
    guidance: (text, audio) classifier-free guidance scales (None: the preset's
    ``sampler.text_scale`` / ``audio_scale``; 1, 1 is the plain conditional velocity).
    drop_audio: the audio-dropped ablation: both audio channels are silence (what the model does
    from the reference and the prompt alone); named ``base-noaudio``. Lip-sync that survives this
    ablation is not driven by the audio.
    """

    name = "base"

    def __init__(self, model: "BaseLPM", vae: "VideoVAE", label: str = "Base LPM", steps: int | None = None,
                 seed: int = 0, info: dict[str, Any] | None = None, text_encoder: Any = None,
                 drop_audio: bool = False, guidance: tuple[float, float] | None = None) -> None:
        self.model, self.vae, self.label, self.steps, self.seed = model.eval(), vae.eval(), label, steps, seed
        self.guidance = guidance
        self.info = dict(info or {})
        self._text = text_encoder
        self.drop_audio = drop_audio
        if drop_audio:
            self.name, self.label = "base-noaudio", f"{label} (audio dropped)"
            self.info["ablation"] = "audio dropped"

    def audio_dropped(self) -> "BaseLPMSystem":
        """The same loaded model as the audio-dropped ablation (shares weights and the text encoder)."""
        return BaseLPMSystem(self.model, self.vae, label=self.label, steps=self.steps, seed=self.seed,
                             info=self.info, text_encoder=self._text_encoder(), drop_audio=True, guidance=self.guidance)

    @classmethod
    def from_files(cls, base_path: Path, vae_path: Path, **kwargs: Any) -> "BaseLPMSystem":
        """From a consolidated Base LPM file (EMA weights when present) and a VAE state-dict file."""
        from lpm_models.base.checkpoint import load_consolidated, read_consolidated
        from lpm_models.vae.model import VideoVAE

        weights = "ema" if read_consolidated(base_path).get("ema_state_dict") else "raw"
        model = load_consolidated(base_path, weights=weights)
        vae = VideoVAE(replace(model.cfg.vae, pretrained_path=None))
        vae.load_pretrained(vae_path)
        return cls(model, vae, **kwargs)

    def _text_encoder(self) -> Any:
        if self._text is None:
            from lpm_models.encoders.text import TextEncoder

            self._text = TextEncoder(self.model.cfg.text)
        return self._text

    def _encode_text(self, caption: str) -> tuple[Any, Any]:
        return self._text_encoder().encode([caption])

    def generate(self, case: BenchCase) -> Generated:
        import torch

        from lpm_models.base.sampler import Guidance
        from lpm_models.online.engine import frames_to_uint8, image_to_tensor
        from lpm_models.online.vae_stream import StreamingDecoder

        cfg, audio = self.model.cfg, case.audio
        guidance = None if self.guidance is None else Guidance(*self.guidance)
        tc, spf = cfg.vae.temporal_factor, cfg.audio.samples_per_frame
        frames = 1 + tc * -(-(case.n_frames - 1) // tc)  # 1 + tc * k >= the case's frames
        speak, listen = (torch.zeros(1, frames * spf) for _ in range(2))
        if not self.drop_audio:
            speak[0, : min(len(audio.speak), frames * spf)] = torch.from_numpy(audio.speak[: frames * spf])
        if audio.listen is not None and not self.drop_audio:
            listen[0, : min(len(audio.listen), frames * spf)] = torch.from_numpy(audio.listen[: frames * spf])
        t0 = time.perf_counter()
        with torch.inference_mode():
            text, mask = self._encode_text(case_caption(case))
            pixels = image_to_tensor(case.reference_image, (cfg.height, cfg.width), "cpu")
            refs = self.vae.encode_image(pixels)[:, 0][None]  # (1, 1, C, h, w)
            latents = self.model.generate(speak, listen, text, mask, refs, torch.ones(1, 1, dtype=torch.bool),
                                          guidance=guidance, steps=self.steps,
                                          generator=torch.Generator().manual_seed(self.seed))
            decoder, video = StreamingDecoder(self.vae), []
            state = decoder.init_state()
            for start in range(0, latents.shape[1], cfg.sampler.chunk_latents):  # bounded memory on long form
                frames, state = decoder.decode(latents[:, start:start + cfg.sampler.chunk_latents].float(), state)
                video.append(frames_to_uint8(frames[0]))  # (f, H, W, 3)
        out = fit_frames(np.concatenate(video), case.n_frames, case.reference_image.shape[:2])
        return Generated(frames=out, seconds=time.perf_counter() - t0)


class VAEReconstructionSystem:
    """Ground truth through the model's video VAE (encode, then the streaming decoder).

    Not a generator: the ceiling of every system that decodes with this VAE. When generated
    video loses its face (no landmarks, no identity), this row says whether the VAE already
    loses it (train the VAE longer) or the generator does (train the DiT longer). Segments of
    ``1 + tc * k`` frames are coded independently, so memory stays bounded on long-form cases.
    Named ``vae-recon``; ``BenchRequest(ablations=True)`` adds it next to each Base LPM.
    """

    name, label = "vae-recon", "VAE reconstruction"

    def __init__(self, vae: "VideoVAE", size: tuple[int, int], segment_latents: int = 13,
                 info: dict[str, Any] | None = None) -> None:
        if segment_latents < 1:
            raise ValueError(f"segment_latents must be >= 1, got {segment_latents}")
        self.vae, self.size, self.segment_latents = vae.eval(), size, segment_latents
        self.info = {"ceiling": "VAE reconstruction of ground truth", **(info or {})}

    def segments(self, total: int) -> list[tuple[int, int]]:
        """[start, end) frame ranges of ``1 + tc * k`` frames (k < ``segment_latents``) covering ``total``."""
        tc, out, start = self.vae.temporal_factor, [], 0
        while start < total:
            end = start + 1 + tc * min(self.segment_latents - 1, (total - start - 1) // tc)
            out.append((start, end))
            start = end
        return out

    def generate(self, case: BenchCase) -> Generated:
        import torch

        from lpm_models.online.engine import frames_to_uint8, image_to_tensor
        from lpm_models.online.vae_stream import StreamingDecoder

        t0 = time.perf_counter()
        source = VideoSource.of(case.truth_video)
        decoder, out = StreamingDecoder(self.vae), []
        frames = source.frames(0, case.n_frames)  # one pass over the file, a segment in memory at a time
        with torch.inference_mode():
            for start, end in self.segments(case.n_frames):
                chunk = [image_to_tensor(rgb, self.size, "cpu") for _, (_, rgb) in zip(range(start, end), frames)]
                if not chunk:
                    break
                if len(chunk) < end - start:  # the file ended early: keep the longest valid prefix
                    chunk = chunk[: 1 + self.vae.temporal_factor * ((len(chunk) - 1) // self.vae.temporal_factor)]
                decoded, _ = decoder.decode(self.vae.encode(torch.cat(chunk)[None]), decoder.init_state())
                out.append(frames_to_uint8(decoded[0]))
        if not out:
            raise ValueError(f"case {case.case_id}: the ground-truth video has no frames")
        video = fit_frames(np.concatenate(out), case.n_frames, case.reference_image.shape[:2])
        return Generated(frames=video, seconds=time.perf_counter() - t0)


class TritonSystem:
    """Online LPM behind a Triton endpoint (gRPC streaming), with per-case latency figures."""

    name = "triton"

    def __init__(self, url: str, model: str, version: str = "", seed: int = 0, timeout_s: float = 300.0) -> None:
        self.url, self.model, self.version, self.seed, self.timeout_s = url, model, version, seed, timeout_s
        self.label = f"Triton {model}" + (f" v{version}" if version else "")
        self.info: dict[str, Any] = {"url": url, "triton_model": model, "triton_version": version}

    def generate(self, case: BenchCase) -> Generated:
        from serving.client import StreamClient  # lazily: quality imports serving only here

        audio = case.audio
        t0 = time.perf_counter()
        with StreamClient(self.url, self.model, self.version, timeout_s=self.timeout_s) as client:
            info = client.open(case.reference_image, prompt=active_prompt(case, 0, 1) or NEUTRAL_CAPTION,
                               seed=self.seed)
            self.info.update({k: info[k] for k in ("model", "version", "fps") if k in info})
            n = int(info["chunk_samples"])
            step = n // (int(info["sample_rate"]) // case.fps)
            chunks = -(-(case.n_frames + 1) // step)
            listen = audio.listen if audio.listen is not None else np.zeros_like(audio.speak)
            out, latencies, ttff = [], [], None
            for k in range(chunks):
                prompt = active_prompt(case, k * step, (k + 1) * step) or NEUTRAL_CAPTION
                a, b = (np.pad(x[k * n:(k + 1) * n], (0, n - len(x[k * n:(k + 1) * n]))).astype(np.float32)
                        for x in (audio.speak, listen))
                client.send(a, b, prompt=prompt)
                reply = client.receive()
                latencies.append(reply.latency_s)
                if ttff is None and reply.first_response_at is not None:
                    ttff = reply.first_response_at - reply.sent_at
                out.append(reply.video)
            client.finish()
        frames = fit_frames(np.concatenate(out), case.n_frames, case.reference_image.shape[:2])
        return Generated(frames=frames, seconds=time.perf_counter() - t0,
                         latency={"ttff_s": ttff, "chunk_p50_s": float(np.percentile(latencies, 50)),
                                  "chunk_p99_s": float(np.percentile(latencies, 99)),
                                  "rtf": float(np.mean(latencies)) / (step / case.fps)})
