"""Base LPM training benchmark: FSDP2 on N CPU ranks vs one process, on a generated dataset.

    python -m lpm_models.base.bench [--steps 10] [--warmup 2] [--ranks 2] [--size 32] [--check]

Each configuration runs the real training CLI (``python -m lpm_models.base.train``) in a child
process with this module's ``rank_reporter``: rank 0 appends its events (with its process CPU
time) to a JSON-lines file, and every rank writes its peak RSS (``resource.getrusage``) to
``rank-<r>.json`` at exit. Throughput is measured between the progress events of steps
``warmup`` and ``warmup + steps`` (start-up, first steps, checkpointing excluded). Per-rank
parameter counts follow FSDP2's dim-0 chunking of every parameter (``shard_base_lpm`` shards
the whole model), counted on the meta device.
"""

from __future__ import annotations

import argparse
import atexit
import json
import logging
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpm_models.bench_report import Figure, failed, format_table
from lpm_models.configs import LPMConfig, get_preset

log = logging.getLogger(__name__)

RANK_DIR_ENV = "LPM_BENCH_RANK_DIR"
FPS, RATE = 25.0, 16000


# ------------------------------------------------------------------- reporter (runs in the ranks)
def _rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def _write_rank_stats(out_dir: Path) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats = {"rank": _rank(), "max_rss_mb": usage.ru_maxrss / 1024, "cpu_s": usage.ru_utime + usage.ru_stime}
    (out_dir / f"rank-{stats['rank']}.json").write_text(json.dumps(stats))


def rank_reporter() -> Any:
    """Reporter factory for ``--reporter lpm_models.base.bench:rank_reporter`` (needs ``LPM_BENCH_RANK_DIR``)."""
    from lpm_models.base.train import JsonlReporter

    if RANK_DIR_ENV not in os.environ:
        raise RuntimeError(f"rank_reporter writes under ${RANK_DIR_ENV}; set it to a directory")
    out_dir = Path(os.environ[RANK_DIR_ENV])
    out_dir.mkdir(parents=True, exist_ok=True)
    atexit.register(_write_rank_stats, out_dir)
    events = JsonlReporter(out_dir / "events.jsonl")

    def report(event: str, data: dict[str, Any]) -> None:
        events(event, {**data, "cpu_s": time.process_time()})

    return report


# ------------------------------------------------------------------------------- pure parts
def window_rates(events: Sequence[dict[str, Any]], start_step: int, samples_per_step: int,
                 world_size: int) -> dict[str, float]:
    """Samples/s by wall clock and per CPU second (rank 0's CPU x ranks) between two progress events.

    events: rank 0's progress events (``step``, ``time``, ``cpu_s``, ``samples_per_s``, ``tokens_per_s``);
    samples_per_step: global samples per optimizer step.
    """
    progress = [e for e in events if e.get("event") == "progress"]
    first = next((e for e in progress if e["step"] >= start_step), None)
    last = progress[-1] if progress else None
    if first is None or last is None or last["step"] <= first["step"]:
        raise RuntimeError(f"no progress events after step {start_step}; raise --steps or lower --warmup")
    samples = (last["step"] - first["step"]) * samples_per_step
    wall = last["time"] - first["time"]
    cpu = (last["cpu_s"] - first["cpu_s"]) * world_size
    tokens_per_sample = last["tokens_per_s"] / last["samples_per_s"] if last.get("samples_per_s") else 0.0
    return {"samples_per_s": samples / max(wall, 1e-9), "samples_per_cpu_s": samples / max(cpu, 1e-9),
            "tokens_per_sample": tokens_per_sample, "steps": float(last["step"] - first["step"])}


def sharded_numel(shapes: Sequence[Sequence[int]], world_size: int) -> list[int]:
    """Parameter elements per rank when every tensor is chunked along dim 0 (``torch.chunk``, FSDP2)."""
    per_rank = [0] * world_size
    for shape in shapes:
        if not shape:
            per_rank[0] += 1
            continue
        rows, rest = shape[0], math.prod(shape[1:])
        size = math.ceil(rows / world_size)
        for r in range(world_size):
            per_rank[r] += max(0, min(size, rows - r * size)) * rest
    return per_rank


def model_shapes(cfg: LPMConfig) -> list[tuple[int, ...]]:
    """Parameter shapes of a Base LPM (meta device: nothing allocated)."""
    from lpm_models.base.model import BaseLPM

    with torch.device("meta"):
        model = BaseLPM(cfg)
    return [tuple(p.shape) for p in model.parameters()]


# ---------------------------------------------------------------------------- dataset + runs
def write_bench_dataset(out: Path, clips: int = 4, frames: int = 40, size: int = 32) -> Path:
    """A tiny curated dataset of moving gradients with tones (``write_dataset`` format)."""
    from lpm_models.data.curation.references import ClipSpan, ReferenceImage, ReferenceSet, ReferenceSource
    from lpm_models.data.dataset.shards import CuratedSample, write_dataset

    def ref(kind: str, vid: str, frame: int, seed: int) -> ReferenceImage:
        image = np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)
        return ReferenceImage(ReferenceSource(kind, f"{vid}-s00-t0", vid, frame, 0.0, (0.1, 0.5, 0.2)), image)

    def sample(i: int) -> CuratedSample:
        vid, other = f"vid{i:03d}", f"vid{i + 1000:03d}"
        clip = ClipSpan(f"{vid}-s00-t0-c{i:02d}", f"{vid}-s00-t0", vid, 200, 200 + frames)
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) / size
        t = np.arange(frames, dtype=np.float32)[:, None, None] / frames
        rgb = np.stack([127 + 100 * np.sin(np.pi * (xs[None] + t + i / 10)), 127 + 100 * np.cos(np.pi * (ys[None] - t)),
                        np.full((frames, size, size), 64.0 + 30 * i)], axis=-1)
        labels = np.repeat(np.array([1, 2], dtype=np.uint8), [frames // 2, frames - frames // 2])
        n = int(frames * RATE / FPS)
        tone = (0.3 * np.sin(2 * np.pi * 220.0 * np.arange(n) / RATE) * 32767).astype(np.int16)
        refs = ReferenceSet(clip, ref("appearance", other, 10, i), [ref("pose", other, 20, 10 * i)],
                            [ref("expression", vid, 10, 20 * i)])
        return CuratedSample(clip=clip, identity=f"ident-{i % 3:04d}", fps=FPS, source_fps=FPS,
                             frames=np.clip(rgb, 0, 255).astype(np.uint8), labels=labels, self_audio=tone,
                             other_audio=tone[::-1].copy(), sample_rate=RATE, references=refs,
                             caption=f"a person talks, clip {i}", source_sha256=f"{i:064x}")

    write_dataset((sample(i) for i in range(clips)), out, shard_size=2)
    return out


def _run_config(size: int, total_steps: int, batch: int, kind: str, threads: int = 0) -> dict[str, Any]:
    return {
        "preset": "tiny",
        "model": {"height": size, "width": size, "clip_frames": 9,
                  "sampler": {"steps": 2, "shift": 1.0, "chunk_latents": 5, "overlap_latents": 1}},
        "data": {"batch_size": batch, "latents": "cached"},
        "train": {"max_steps": total_steps, "warmup_steps": 1,
                  "phases": [{"name": "bench", "steps": total_steps, "refs": 2}]},
        "strategy": {"kind": kind}, "checkpoint_every": 0, "log_every": 1, "preview_every": -1,
        "threads_per_rank": threads,
    }


def run_training(dataset: Path, work: Path, ranks: int, steps: int, warmup: int, batch: int,
                 size: int, threads: int = 0) -> dict[str, Any]:
    """One training run in a child process; rank 0's events, every rank's stats, the wall time."""
    work.mkdir(parents=True, exist_ok=True)
    config = work / "run.json"
    kind = "fsdp2" if ranks > 1 else "single"
    config.write_text(json.dumps(_run_config(size, warmup + steps, batch, kind, threads)))
    env = {**os.environ, RANK_DIR_ENV: str(work / "ranks")}
    cmd = [sys.executable, "-m", "lpm_models.base.train", "--config", str(config), "--dataset", str(dataset),
           "--out", str(work / "out"), "--ranks", str(ranks), "--resume", "none",
           "--reporter", "lpm_models.base.bench:rank_reporter"]
    log.info("training %d rank(s), %s, %d + %d steps: %s", ranks, kind, warmup, steps, " ".join(cmd))
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"training with {ranks} rank(s) failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    events = [json.loads(x) for x in (work / "ranks" / "events.jsonl").read_text().splitlines()]
    stats = sorted((json.loads(p.read_text()) for p in (work / "ranks").glob("rank-*.json")), key=lambda s: s["rank"])
    if len(stats) != ranks:
        raise RuntimeError(f"expected {ranks} rank stats under {work / 'ranks'}, found {len(stats)}")
    return {"events": events, "stats": stats, "wall_s": time.perf_counter() - started}


def figures_for(label: str, run: dict[str, Any], ranks: int, batch: int, warmup: int,
                per_rank_params: list[int]) -> list[Figure]:
    """Throughput, peak RSS and parameter figures of one run."""
    r = window_rates(run["events"], warmup, batch * ranks, ranks)
    figs = [
        Figure(f"{label} samples/s", r["samples_per_s"], "1/s", r["samples_per_cpu_s"]),
        Figure(f"{label} tokens/s", r["samples_per_s"] * r["tokens_per_sample"], "1/s",
               r["samples_per_cpu_s"] * r["tokens_per_sample"]),
    ]
    for s in run["stats"]:
        figs.append(Figure(f"{label} rank {s['rank']} peak RSS", s["max_rss_mb"], "MB"))
    for rank, n in enumerate(per_rank_params):
        figs.append(Figure(f"{label} rank {rank} parameters", float(n), ""))
    return figs


def run_bench(steps: int, warmup: int, ranks: int, batch: int, size: int, work: Path,
              min_speedup: float, threads: int = 0) -> list[Figure]:
    """Both configurations (N ranks FSDP2, 1 process), their figures and the speed-up."""
    if warmup < 2:
        raise ValueError("--warmup must be >= 2 (the first progress event comes after step 2)")
    dataset = write_bench_dataset(work / "dataset", size=size)
    shapes = model_shapes(get_preset("tiny", height=size, width=size, clip_frames=9))
    full = sum(math.prod(s) for s in shapes)
    multi = run_training(dataset, work / f"ranks{ranks}", ranks, steps, warmup, batch, size, threads)
    single = run_training(dataset, work / "ranks1", 1, steps, warmup, batch, size, threads)
    many = figures_for(f"fsdp2 x{ranks}", multi, ranks, batch, warmup, sharded_numel(shapes, ranks))
    one = figures_for("single", single, 1, batch, warmup, [full])
    speed = many[0].value / max(one[0].value, 1e-12)
    cpu_speed = (many[0].cpu_value or 0.0) / max(one[0].cpu_value or 0.0, 1e-12)
    return many + one + [Figure(f"fsdp2 x{ranks} / single samples/s", speed, "x", cpu_speed,
                                min_speedup or None, ">=")]


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog, description="Base LPM training throughput: FSDP2 on N CPU ranks vs 1 process.")
    parser.add_argument("--steps", type=int, default=10, help="measured steps (after --warmup)")
    parser.add_argument("--warmup", type=int, default=2, help="steps before the measurement window (>= 2)")
    parser.add_argument("--ranks", type=int, default=2, help="FSDP2 ranks (CPU processes)")
    parser.add_argument("--batch", type=int, default=2, help="batch size per rank")
    parser.add_argument("--size", type=int, default=32, help="frame height = width of the tiny preset")
    parser.add_argument("--min-speedup", type=float, default=1.0,
                        help="--check target: N-rank / 1-process samples/s (0: no target)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads per rank (0: the trainer's default, cores / ranks)")
    parser.add_argument("--work", type=Path, help="working directory (default: a temporary one)")
    parser.add_argument("--check", action="store_true", help="exit 1 if a figure misses its target")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="lpm-bench-train-") as tmp:
        work = args.work or Path(tmp)
        figs = run_bench(args.steps, args.warmup, args.ranks, args.batch, args.size, work, args.min_speedup,
                         args.threads)
    print(format_table(figs, f"Base LPM training bench: tiny {args.size}x{args.size}, batch {args.batch}/rank, "
                             f"{args.steps} steps after {args.warmup} warm-up (cpu = per CPU-second)"))
    missed = failed(figs)
    if args.check and missed:
        log.error("below target: %s", ", ".join(f.name for f in missed))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
