"""Serving benchmark: real-time factor, time to first frame, Triton overhead, errors.

    python -m serving.bench                      # deploy an untrained `tiny` model, measure, unload
    python -m serving.bench --model lpm-online   # measure a model Triton already serves
    python -m serving.bench --check              # exit 1 when a figure misses its target

Needs a running Triton and object store (``lpm services up``) and their environment
(``eval "$(lpm services env)"``: LPM_TRITON_GRPC_URL, LPM_TRITON_REPOSITORY, LPM_S3_*).
Figures: single-stream RTF (as fast as possible), RTF of each of N concurrent streams
paced at real time, TTFF p95, per-chunk p50/p99, Triton per-chunk overhead against the same
model stepped in process (same thread count, alternating rounds; split into time inside the
model instance and transport via Triton's metrics), errors; for reference, the RTF of N sessions
stepped in process at once (what the machine allows at all).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lpm_models.descriptor import ModelDescriptor
from lpm_models.online.engine import OnlineEngine
from serving.client import StreamClient
from serving.conversation import StreamReport, percentile, run_stream
from serving.loader import engine_from_files, load_engine
from serving.metrics import MetricsWatcher, scrape
from serving.params import ServingParams, VersionFiles, config_parameters
from serving.probe import card_image, probe, speech_like
from serving.repository import ServeSettings, build_model, remove_version
from serving.store import ObjectStore, default_cache_dir

log = logging.getLogger("serving.bench")
BENCH_MODEL = "lpm-bench"


@dataclass(frozen=True)
class Targets:
    """Pass marks of ``--check`` (RTF applies to the single stream and to every concurrent one;
    the overhead is Triton's per-chunk p50 minus the in-process one, as a fraction of the latter)."""

    rtf: float = 1.0
    ttff_p95_s: float = 1.0
    overhead_ratio: float = 0.10
    errors: int = 0


def deploy_untrained(preset: str, repository: Path, url: str, instances: int, threads: int,
                     workdir: Path) -> tuple[str, str, OnlineEngine]:
    """Upload an untrained ``preset`` model, build it into the repository, load it; returns (name, version, engine)."""
    import tritonclient.grpc as grpcclient

    from lpm_models.base.model import BaseLPM
    from lpm_models.configs import get_preset
    from lpm_models.online.config import online_preset
    from lpm_models.online.model import OnlineLPM, save_online
    from lpm_models.vae.model import VideoVAE

    torch.manual_seed(0)
    cfg = get_preset(preset)
    online = OnlineLPM.from_base(BaseLPM(cfg).eval(), online_preset(preset)).eval()
    paths = {"online": save_online(online, workdir / "online.pt"), "vae": workdir / "vae.pt"}
    torch.save({"state_dict": VideoVAE(cfg.vae).state_dict()}, paths["vae"])
    store = ObjectStore.from_env()
    refs = {k: store.upload(p, f"s3://lpm-models/bench/{preset}/{p.name}").to_dict() for k, p in paths.items()}
    descriptor = ModelDescriptor.from_dict({"format": "lpm-model/1", "kind": "online", "preset": preset,
                                            "files": refs, "lineage": {"dataset_version": "untrained"}})
    remove_version(repository, BENCH_MODEL, 1)
    build_model(repository, descriptor, registered_model=BENCH_MODEL, version=1, run_id=f"bench-{preset}",
                settings=ServeSettings(ServingParams(threads=threads), instances=instances, max_sessions=8))
    started = time.perf_counter()
    grpcclient.InferenceServerClient(url).load_model(BENCH_MODEL)
    log.info("loaded %s (%s, %d instances) in %.1f s", BENCH_MODEL, preset, instances, time.perf_counter() - started)
    return BENCH_MODEL, "1", load_engine(paths["online"], paths["vae"])


def served_engine(url: str, model: str, version: str) -> tuple[str, OnlineEngine, int]:
    """The in-process twin of a served model (weights from its config), its version and thread count."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    config = client.get_model_config(model, as_json=True)["config"]
    params = config_parameters(config)
    if not version:
        versions = client.get_model_metadata(model, as_json=True)["versions"]
        version = max(versions, key=int)
    files = VersionFiles.from_parameters(params, int(version))
    threads = ServingParams.from_parameters(params).threads
    return version, engine_from_files(files.files, default_cache_dir()), threads


def in_process_chunks(engine: OnlineEngine, seconds: float) -> list[float]:
    """Per-chunk seconds of the engine stepping one session in this process (first chunk excluded)."""
    rate = engine.model.cfg.audio.sample_rate
    session = engine.start(card_image(), seed=0)
    a, b = speech_like(seconds, rate, 0), speech_like(seconds, rate, 1)
    n = engine.chunk_samples
    times = []
    for k in range(0, a.size - n + 1, n):
        started = time.perf_counter()
        engine.step(session, a[k:k + n], b[k:k + n])
        times.append(time.perf_counter() - started)
    engine.close(session)
    return times[1:]


def in_process_parallel(engine: OnlineEngine, seconds: float, streams: int) -> list[float]:
    """RTF of ``streams`` sessions stepped at once in this process (one thread each): the machine's ceiling."""
    import threading

    rtfs: list[float] = []

    def one() -> None:
        times = in_process_chunks(engine, seconds)
        rtfs.append(sum(times) / len(times) / engine.chunk_seconds if times else float("nan"))

    threads = [threading.Thread(target=one) for _ in range(streams)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return [round(r, 4) for r in rtfs]


@dataclass
class ServedRound:
    """One Triton stream of the overhead measurement: its cold first chunk, the warm rest, and what
    Triton's metrics counted over the warm chunks only (None without metrics)."""

    first: StreamReport
    warm: StreamReport
    compute_mean_s: float | None

    @property
    def latencies(self) -> list[float]:
        return self.first.latencies + self.warm.latencies

    @property
    def errors(self) -> list[str]:
        return self.first.errors + self.warm.errors


def single_stream(url: str, model: str, version: str, seconds: float, metrics_url: str | None = None) -> ServedRound:
    """One stream sent as fast as possible (each chunk once the previous one's frames are back).

    START, the first chunk and END run outside the metrics window, so the model-instance time read
    from Triton's counters belongs to the warm chunks alone.
    """
    with StreamClient(url, model, version) as client:
        info = client.open(card_image(), seed=0)
        rate, n = int(info["sample_rate"]), int(info["chunk_samples"])
        a, b = speech_like(seconds, rate, 0), speech_like(seconds, rate, 1)
        first = run_stream(client, a[:n], b[:n], realtime=False, end=False)
        warm: StreamReport | None = None
        compute: float | None = None
        try:
            with MetricsWatcher(metrics_url, model, version, interval_s=5.0) if metrics_url else nullcontext() as watch:
                warm = run_stream(client, a[n:], b[n:], realtime=False, end=False)
            executed = watch.delta("nv_inference_exec_count") if watch is not None else 0.0
            if watch is not None and executed >= 1:
                compute = watch.delta("nv_inference_compute_infer_duration_us") / executed / 1e6
        except OSError as err:  # a failed scrape loses this round's split, not the round
            log.warning("Triton metrics unavailable during the round (%s): no split for it", err)
        if warm is None:  # the scrape before the stream failed: stream unwatched
            warm = run_stream(client, a[n:], b[n:], realtime=False, end=False)
        client.finish()
    return ServedRound(first, warm, compute)


def measure_overhead(url: str, model: str, version: str, engine: OnlineEngine, seconds: float, rounds: int,
                     metrics_url: str | None = None) -> dict[str, Any]:
    """Per-chunk latency through Triton against the same engine stepped in this process.

    The two are measured in alternating rounds (in process, then one Triton stream, ``rounds``
    times) so a slow spell of the machine hits both sides. The overhead (the goal's figure) is
    the difference of the pooled p50s of warm chunks (each stream's first chunk excluded). With
    Triton's metrics the mean overhead is split over the same warm chunks: time inside the model
    instance beyond the in-process step (adapter, stub) and transport (gRPC, queueing, IPC).
    ``single_*`` figures cover every chunk of the Triton streams (first ones included); TTFF is the
    slowest first chunk over the rounds.
    """
    if metrics_url:
        try:
            scrape(metrics_url)
        except OSError as err:
            log.warning("no Triton metrics at %s (%s): the overhead is reported without its split", metrics_url, err)
            metrics_url = None
    local: list[float] = []
    served: list[float] = []
    splits: list[tuple[float, float, float]] = []  # per round: instance compute, in-process and Triton means
    per_round: list[float] = []
    rounds_done: list[ServedRound] = []
    for k in range(rounds):
        times = in_process_chunks(engine, seconds)
        served_round = single_stream(url, model, version, seconds, metrics_url)
        rounds_done.append(served_round)
        warm = served_round.warm.latencies
        local += times
        served += warm
        if served_round.compute_mean_s is not None and warm and times:
            splits.append((served_round.compute_mean_s, float(np.mean(times)), float(np.mean(warm))))
        x, y = percentile(warm, 50), percentile(times, 50)
        if x is not None and y:
            per_round.append((x - y) / y)
        log.info("overhead round %d/%d: in process p50 %s s, Triton p50 %s s", k + 1, rounds, y, x)
    local_p50, served_p50 = percentile(local, 50), percentile(served, 50)
    overhead = None if local_p50 is None or served_p50 is None else served_p50 - local_p50
    latencies = [x for r in rounds_done for x in r.latencies]
    compute, mean_local, mean_served = (float(v) for v in np.mean(splits, axis=0)) if splits else (None, None, None)
    return {
        "rounds": rounds, "in_process_chunk_p50_s": local_p50, "triton_chunk_p50_warm_s": served_p50,
        "triton_overhead_s": overhead,
        "triton_overhead_ratio": None if overhead is None or not local_p50 else overhead / local_p50,
        "triton_overhead_ratio_per_round": [round(r, 4) for r in per_round],
        "triton_compute_mean_s": compute,
        "triton_instance_extra_s": None if compute is None else compute - mean_local,
        "triton_transport_s": None if compute is None else mean_served - compute,
        "single_rtf": round(sum(latencies) / len(latencies) / engine.chunk_seconds, 4) if latencies else None,
        "single_ttff_s": max((r.first.ttff_s for r in rounds_done if r.first.ttff_s is not None), default=None),
        "single_chunk_p50_s": percentile(latencies, 50), "single_chunk_p99_s": percentile(latencies, 99),
        "errors": sum(len(r.errors) for r in rounds_done),
        "error_messages": [e for r in rounds_done for e in r.errors][:5],
    }


def measure(url: str, model: str, version: str, engine: OnlineEngine, threads: int, seconds: float,
            streams: int, rounds: int = 3, metrics_url: str | None = None) -> dict[str, Any]:
    """All figures (seconds; ratios as fractions)."""
    torch.set_num_threads(threads)
    single = measure_overhead(url, model, version, engine, seconds, rounds, metrics_url)
    concurrent = probe(url, model, version, streams=streams, seconds=seconds, realtime=True).summary()
    parallel = in_process_parallel(engine, seconds, streams)
    local_p50 = single["in_process_chunk_p50_s"]
    chunk_s = engine.chunk_seconds
    return {
        "model": model, "version": version, "preset": engine.model.cfg.name, "chunk_s": chunk_s, "threads": threads,
        **{k: v for k, v in single.items() if k not in ("errors", "error_messages")},
        "in_process_rtf": None if local_p50 is None else local_p50 / chunk_s,
        "streams": streams, "concurrent_rtf": concurrent["rtf_per_stream"],
        "in_process_parallel_rtf": parallel, "concurrent_ttff_p95_s": concurrent["ttff_p95_s"],
        "concurrent_chunk_p50_s": concurrent["chunk_p50_s"], "concurrent_chunk_p99_s": concurrent["chunk_p99_s"],
        "concurrent_max_lag_s": concurrent["max_lag_s"],
        "errors": single["errors"] + concurrent["errors"],
        "error_messages": single["error_messages"] + concurrent["error_messages"],
    }


def failures(figures: dict[str, Any], targets: Targets) -> list[str]:
    """Which targets the figures miss (empty: all pass)."""
    out = []
    rtfs = [("single-stream RTF", figures["single_rtf"])] + [
        (f"stream {i + 1}/{figures['streams']} RTF", r) for i, r in enumerate(figures["concurrent_rtf"])]
    out += [f"{name} {r} > {targets.rtf}" for name, r in rtfs if r is None or r > targets.rtf]
    if len(figures["concurrent_rtf"]) < figures["streams"]:
        out.append(f"only {len(figures['concurrent_rtf'])} of {figures['streams']} concurrent streams completed")
    ttff = figures["concurrent_ttff_p95_s"]
    if ttff is None or ttff > targets.ttff_p95_s:
        out.append(f"TTFF p95 {ttff} s > {targets.ttff_p95_s} s")
    ratio = figures["triton_overhead_ratio"]
    if ratio is None or ratio > targets.overhead_ratio:
        shown = "unmeasured" if ratio is None else f"{ratio:.1%}"
        out.append(f"Triton per-chunk overhead {shown} of the in-process chunk > {targets.overhead_ratio:.1%}")
    if figures["errors"] > targets.errors:
        out.append(f"{figures['errors']} errors > {targets.errors}: {figures['error_messages'][:3]}")
    return out


def format_figures(figures: dict[str, Any], failed: list[str] | None) -> str:
    """The figures as the text `lpm serve bench` prints (with the verdict when ``failed`` is not None)."""

    def ms(x: float | None) -> str:
        return "-" if x is None else f"{x * 1000:.1f} ms"

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.1%}"

    def speed(rtf: Any) -> str:
        values = rtf if isinstance(rtf, list) else [rtf]
        return "/".join("-" if not v else f"{1 / v:.2f}x" for v in values)

    f = figures
    lines = [
        f"{f['model']} v{f['version']} ({f['preset']}, chunk {f['chunk_s']:.3f} s, {f['threads']} thread(s)/instance)",
        "  RTF = processing time / media time (<= 1 keeps up with real time); speed = 1 / RTF = seconds of "
        "video per wall-clock second",
        f"  single stream    RTF {f['single_rtf']} (speed {speed(f['single_rtf'])})  TTFF {ms(f['single_ttff_s'])}  "
        f"chunk p50 {ms(f['single_chunk_p50_s'])} p99 {ms(f['single_chunk_p99_s'])}",
        f"  in process       RTF {f['in_process_rtf'] and round(f['in_process_rtf'], 4)}  "
        f"chunk p50 {ms(f['in_process_chunk_p50_s'])}",
        f"  Triton overhead  {ms(f['triton_overhead_s'])} per chunk = {pct(f['triton_overhead_ratio'])} of the "
        f"in-process chunk (p50 {ms(f['triton_chunk_p50_warm_s'])} vs {ms(f['in_process_chunk_p50_s'])}, "
        f"{f['rounds']} alternating rounds; per round {[pct(r) for r in f['triton_overhead_ratio_per_round']]})",
        f"                   mean split: model instance {ms(f['triton_compute_mean_s'])} per chunk "
        f"({ms(f['triton_instance_extra_s'])} over the in-process step), transport (gRPC, queue, IPC) "
        f"{ms(f['triton_transport_s'])}",
        f"  {f['streams']} streams (real time)  RTF each {f['concurrent_rtf']} (speed {speed(f['concurrent_rtf'])})  "
        f"TTFF p95 {ms(f['concurrent_ttff_p95_s'])}  chunk p50 {ms(f['concurrent_chunk_p50_s'])} "
        f"p99 {ms(f['concurrent_chunk_p99_s'])}  max lag {ms(f['concurrent_max_lag_s'])}",
        f"  {f['streams']} sessions in process, one thread each (the machine's ceiling): RTF each "
        f"{f['in_process_parallel_rtf']}",
        f"  errors {f['errors']}" + (f"  {f['error_messages'][:3]}" if f["errors"] else ""),
    ]
    if failed is not None:
        lines.append("PASS: every target met" if not failed else "FAIL:\n  " + "\n  ".join(failed))
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Flags shared by ``python -m serving.bench`` and ``lpm serve bench``."""
    t = Targets()
    p.add_argument("--url", help="Triton gRPC host:port (default $LPM_TRITON_GRPC_URL)")
    p.add_argument("--model", help="benchmark this served model instead of deploying an untrained one")
    p.add_argument("--version", default="", help="served version (default: the newest)")
    p.add_argument("--preset", default="tiny", help="preset of the untrained model (default %(default)s)")
    p.add_argument("--repository", type=Path,
                   help="Triton model repository to deploy the untrained model into (default $LPM_TRITON_REPOSITORY)")
    p.add_argument("--instances", type=int, default=2, help="model instances (default %(default)s)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per instance (default %(default)s)")
    p.add_argument("--seconds", type=float, default=8.0, help="audio per stream (default %(default)s)")
    p.add_argument("--streams", type=int, default=2, help="concurrent real-time streams (default %(default)s)")
    p.add_argument("--keep", action="store_true", help="leave the untrained bench model loaded")
    p.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    p.add_argument("--target-rtf", type=float, default=t.rtf, help="max RTF per stream (default %(default)s)")
    p.add_argument("--target-ttff", type=float, default=t.ttff_p95_s, help="max TTFF p95, s (default %(default)s)")
    p.add_argument("--target-overhead", type=float, default=t.overhead_ratio,
                   help="max Triton per-chunk overhead as a fraction of the in-process chunk (default %(default)s)")
    p.add_argument("--rounds", type=int, default=3,
                   help="alternating in-process / Triton rounds of --seconds each for the overhead (default %(default)s)")
    p.add_argument("--metrics-url", help="Triton metrics host:port, to split the overhead (default $LPM_TRITON_METRICS_URL)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")


def run(args: argparse.Namespace) -> tuple[str, int]:
    """Deploy (unless --model), measure; returns (the report to print, the exit code)."""
    import tritonclient.grpc as grpcclient

    args.url = args.url or os.environ.get("LPM_TRITON_GRPC_URL")
    args.repository = args.repository or os.environ.get("LPM_TRITON_REPOSITORY")
    args.metrics_url = args.metrics_url or os.environ.get("LPM_TRITON_METRICS_URL")
    if args.rounds < 1:
        raise ValueError(f"--rounds must be >= 1, got {args.rounds}")
    if not args.url:
        raise RuntimeError("no Triton address: pass --url or `eval \"$(lpm services env)\"`")
    with tempfile.TemporaryDirectory(prefix="lpm-bench-") as tmp:
        if args.model:
            model = args.model
            version, engine, threads = served_engine(args.url, model, args.version)
        else:
            if not args.repository:
                raise RuntimeError("no model repository: pass --repository or `eval \"$(lpm services env)\"`")
            model, version, engine = deploy_untrained(args.preset, Path(args.repository), args.url,
                                                      args.instances, args.threads, Path(tmp))
            threads = args.threads
        try:
            figures = measure(args.url, model, version, engine, threads, args.seconds, args.streams,
                              rounds=args.rounds, metrics_url=args.metrics_url)
        finally:
            if not args.model and not args.keep:
                grpcclient.InferenceServerClient(args.url).unload_model(model)
    targets = Targets(rtf=args.target_rtf, ttff_p95_s=args.target_ttff, overhead_ratio=args.target_overhead)
    failed = failures(figures, targets) if args.check else None
    text = (json.dumps({**figures, "targets": asdict(targets), "failures": failed}) if args.json
            else format_figures(figures, failed))
    return text, 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serving.bench", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    text, code = run(parser.parse_args(argv))
    print(text)
    return code


if __name__ == "__main__":
    sys.exit(main())
