"""Online LPM streaming benchmark (in process, CPU): real-time factor, time to first frame,
per-frame cost against Base LPM sampling of the same long output (steady state on both sides:
Online with its context full, Base's chunk-wise continuation), and RSS over a long stream.

    python -m lpm_models.online.bench --untrained [--seconds 4] [--long-minutes 2] [--check]
    python -m lpm_models.online.bench --model online.pt --vae vae.pt --long-minutes 30 --check

Every figure is given by wall clock and by process CPU time (``time.process_time``, all
threads); on a loaded machine the wall figures are pessimistic. ``--untrained`` builds a
random-init tiny model: the architecture, hence the speed, is the same as a trained one.
The memory slope is MB of RSS per minute of generated video (flat stream: ~0).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from lpm_models.base.model import BaseLPM
from lpm_models.bench_report import Figure, current_rss_mb, failed, format_table, slope
from lpm_models.configs import get_preset
from lpm_models.online.config import online_preset
from lpm_models.online.engine import OnlineEngine
from lpm_models.online.model import OnlineLPM, load_online
from lpm_models.online.vae_stream import StreamingDecoder
from lpm_models.vae.model import VideoVAE

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamTargets:
    """Pass thresholds (``--check``)."""

    rtf: float = 1.5  # seconds of video per wall second
    ttff_s: float = 1.0
    cheaper_than_base: float = 20.0  # Base per-frame cost / Online per-frame cost
    rss_slope_mb_per_min: float = 2.0  # RSS growth per minute of video


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(start: tuple[float, float]) -> Timing:
    wall, cpu = _clock()
    return Timing(wall - start[0], cpu - start[1])


def build_engine(model_path: Path | None, vae_path: Path | None, seed: int = 0) -> OnlineEngine:
    """An engine over trained files, or a random-init tiny model at native resolution (both None)."""
    if (model_path is None) != (vae_path is None):
        raise ValueError("pass both --model and --vae, or --untrained")
    if model_path is not None and vae_path is not None:
        model = load_online(model_path)
        vae = VideoVAE(replace(model.cfg.vae, pretrained_path=None))
        vae.load_pretrained(vae_path)
        return OnlineEngine(model, vae.eval())
    torch.manual_seed(seed)
    cfg = get_preset("tiny")
    return OnlineEngine(OnlineLPM(cfg, online_preset("tiny")).eval(), VideoVAE(cfg.vae).eval())


class _Feed:
    """Deterministic character image and audio chunks for one engine."""

    def __init__(self, engine: OnlineEngine, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        cfg = engine.model.cfg
        self.image = self.rng.integers(0, 256, (cfg.height, cfg.width, 3), dtype=np.uint8)
        self.n = engine.chunk_samples

    def audio(self) -> np.ndarray:
        return (self.rng.standard_normal(self.n) * 0.1).astype(np.float32)


def measure_stream(engine: OnlineEngine, seconds: float) -> dict[str, float]:
    """TTFF (start + first chunk) and steady-state real-time factor over ``seconds`` of video.

    Steady state starts once the context is full (sink + window chunks generated): from then on
    every chunk attends to the same number of keys, as in an hour-long stream.
    """
    fps = engine.model.cfg.fps
    feed = _Feed(engine)
    t0 = _clock()
    session = engine.start(feed.image, seed=0)
    engine.step(session, feed.audio(), feed.audio())
    ttff = _since(t0)
    for _ in range(engine.model.online.context_chunks):
        engine.step(session, feed.audio(), feed.audio())
    frames, t1 = 0, _clock()
    while frames < seconds * fps:
        frames += engine.step(session, feed.audio(), feed.audio()).shape[0]
    run = _since(t1)
    engine.close(session)
    video_s = frames / fps
    log.info("stream: %d frames (%.1f s of video) in %.2f s wall / %.2f s CPU", frames, video_s, run.wall_s, run.cpu_s)
    return {"ttff_wall": ttff.wall_s, "ttff_cpu": ttff.cpu_s, "rtf_wall": video_s / run.wall_s,
            "rtf_cpu": video_s / max(run.cpu_s, 1e-9), "frame_wall": run.wall_s / frames,
            "frame_cpu": run.cpu_s / frames}


def measure_stream_without_refiner(engine: OnlineEngine, seconds: float) -> dict[str, float] | None:
    """The same stream with the refiner switched off (``OnlineConfig.refiner``), or None without one."""
    online = engine.model.online
    if not online.refiner or engine.model.refiner is None:
        return None
    engine.model.configure(replace(online, refiner=False))
    try:
        return measure_stream(engine, seconds)
    finally:
        engine.model.configure(online)


@torch.inference_mode()
def _base_sample(base: BaseLPM, engine: OnlineEngine, num_latents: int, steps: int | None = None) -> tuple[Timing, int]:
    cfg = base.cfg
    frames = cfg.video_frames(num_latents)
    g = torch.Generator().manual_seed(0)
    audio = torch.randn(1, frames * cfg.audio.samples_per_frame, generator=g) * 0.1
    text = torch.randn(1, 8, cfg.dit.text_dim, generator=g)
    h, w = cfg.latent_size
    refs = torch.randn(1, 1, cfg.vae.latent_channels, h, w, generator=g)
    t0 = _clock()
    latents = base.generate(audio, audio.clone(), text, refs=refs, steps=steps, generator=g)
    # decoded as Base's bench system does (quality.bench.systems.BaseLPMSystem): the streaming decoder
    video = StreamingDecoder(engine.vae).decode_all(latents, cfg.sampler.chunk_latents)  # (1, F, 3, H, W)
    return _since(t0), int(video.shape[1])


def measure_base(engine: OnlineEngine) -> dict[str, float]:
    """Per-frame cost of Base LPM sampling (its default steps, 3 guidance passes) + VAE decode
    (the same fast decoder as Online's).

    Base makes a long video by chunk-wise continuation: a first chunk of ``chunk_latents``, then
    chunks that regenerate ``overlap_latents`` of the previous one. The same output as a stream
    is the continuation's cost per new frame (two chunks minus one chunk); the first chunk's
    per-frame cost is reported too. The Base model has the Online model's width (same
    ``LPMConfig``), random init: the cost does not depend on the weights.
    """
    cfg = engine.model.cfg
    torch.manual_seed(1)
    base = BaseLPM(cfg).eval()
    chunk, overlap = cfg.sampler.chunk_latents, cfg.sampler.overlap_latents
    _base_sample(base, engine, chunk, steps=1)  # warm-up: one-time costs would shrink the difference below
    one, n_one = _base_sample(base, engine, chunk)
    two, n_two = _base_sample(base, engine, 2 * chunk - overlap)
    new = n_two - n_one
    log.info("base: %d frames in %.2f s wall; %d frames in %.2f s wall (%d steps, 3 guidance passes)", n_one,
             one.wall_s, n_two, two.wall_s, cfg.sampler.steps)
    return {"frame_wall": max(two.wall_s - one.wall_s, 1e-9) / new, "frame_cpu": max(two.cpu_s - one.cpu_s, 1e-9) / new,
            "first_frame_wall": one.wall_s / n_one, "first_frame_cpu": one.cpu_s / n_one, "frames": float(n_two)}


def measure_memory(engine: OnlineEngine, minutes: float, every_chunks: int) -> dict[str, float]:
    """RSS every ``every_chunks`` chunks over ``minutes`` of video; slope in MB per video minute."""
    fps = engine.model.cfg.fps
    feed = _Feed(engine, seed=3)
    session = engine.start(feed.image, seed=1)
    target = minutes * 60 * fps
    xs: list[float] = []
    ys: list[float] = []
    frames, chunk, t0 = 0, 0, time.perf_counter()
    next_log = t0 + 30.0
    while frames < target:
        frames += engine.step(session, feed.audio(), feed.audio()).shape[0]
        chunk += 1
        if chunk % every_chunks == 0 or frames >= target:
            xs.append(frames / fps / 60)
            ys.append(current_rss_mb())
        if time.perf_counter() > next_log:
            done = frames / target
            eta = (time.perf_counter() - t0) * (1 - done) / max(done, 1e-9)
            log.info("long stream: %.2f / %.2f min of video, RSS %.0f MB, eta %.0f s", frames / fps / 60, minutes,
                     current_rss_mb(), eta)
            next_log += 30.0
    engine.close(session)
    # the first samples include warm-up allocations; fit on the second half when there are enough
    half = len(xs) // 2 if len(xs) >= 8 else 0
    return {"rss_start": ys[0], "rss_end": ys[-1], "slope": slope(xs[half:], ys[half:]), "samples": float(len(xs)),
            "minutes": frames / fps / 60}


def run_bench(engine: OnlineEngine, seconds: float, long_minutes: float, every_chunks: int,
              targets: StreamTargets = StreamTargets()) -> list[Figure]:
    """All streaming figures, each against its target."""
    s = measure_stream(engine, seconds)
    lean = measure_stream_without_refiner(engine, seconds)
    b = measure_base(engine)
    m = measure_memory(engine, long_minutes, every_chunks) if long_minutes > 0 else None
    figs = [
        Figure("real-time factor", s["rtf_wall"], "x", s["rtf_cpu"], targets.rtf, ">="),
        Figure("time to first frame", s["ttff_wall"], "s", s["ttff_cpu"], targets.ttff_s, "<="),
        Figure("online per frame", s["frame_wall"] * 1e3, "ms", s["frame_cpu"] * 1e3),
        Figure("base per frame (first chunk)", b["first_frame_wall"] * 1e3, "ms", b["first_frame_cpu"] * 1e3),
        Figure("base per frame (continuation)", b["frame_wall"] * 1e3, "ms", b["frame_cpu"] * 1e3),
        Figure("online cheaper than base", b["frame_wall"] / s["frame_wall"], "x",
               b["frame_cpu"] / max(s["frame_cpu"], 1e-12), targets.cheaper_than_base, ">="),
    ]
    if lean is not None:
        figs += [
            Figure("online per frame, refiner off", lean["frame_wall"] * 1e3, "ms", lean["frame_cpu"] * 1e3),
            Figure("online cheaper than base, refiner off", b["frame_wall"] / lean["frame_wall"], "x",
                   b["frame_cpu"] / max(lean["frame_cpu"], 1e-12)),
        ]
    if m is not None:
        figs += [
            Figure(f"RSS at start ({m['samples']:.0f} samples)", m["rss_start"], "MB"),
            Figure(f"RSS at end ({m['minutes']:.1f} min video)", m["rss_end"], "MB"),
            # below a minute of video the slope is dominated by allocator noise: reported, not judged
            Figure("RSS slope", m["slope"], "MB/min", None,
                   targets.rss_slope_mb_per_min if m["minutes"] >= 1.0 else None, "<="),
        ]
    return figs


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(prog=prog, description="Online LPM streaming benchmark (in process, CPU).")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", type=Path, help="Online LPM file (save_online); needs --vae")
    src.add_argument("--untrained", action="store_true", help="random-init tiny model (same speed)")
    parser.add_argument("--vae", type=Path, help="VAE weights file (with --model)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of video for the real-time factor")
    parser.add_argument("--long-minutes", type=float, default=2.0,
                        help="minutes of video for the memory run (30 for the full soak; 0 skips it)")
    parser.add_argument("--rss-every", type=int, default=25, help="sample RSS every N chunks")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure misses its target")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    engine = build_engine(args.model, args.vae)
    cfg = engine.model.cfg
    figs = run_bench(engine, args.seconds, args.long_minutes, max(1, args.rss_every))
    title = (f"Online LPM stream bench: {cfg.name} {cfg.height}x{cfg.width} @ {cfg.fps} fps, "
             f"chunk {engine.chunk_frames} frames, {torch.get_num_threads()} threads"
             f"{' (untrained)' if args.untrained else ''}")
    print(format_table(figs, title))
    missed = failed(figs)
    if args.check and missed:
        log.error("below target: %s", ", ".join(f.name for f in missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
