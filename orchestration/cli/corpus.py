"""`lpm corpus` — generate, benchmark and inspect the synthetic conversation corpus."""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# flag -> (CorpusConfig field, type, help); defaults come from CorpusConfig itself
CONFIG_FLAGS: tuple[tuple[str, str, type, str], ...] = (
    ("--seed", "seed", int, "corpus seed"),
    ("--conversations", "n_conversations", int, "number of videos"),
    ("--duration", "duration_s", float, "mean seconds per video"),
    ("--jitter", "duration_jitter", float, "duration spread, +- fraction of --duration"),
    ("--size", "size", int, "face region in px (split-screen videos are twice as wide)"),
    ("--split-fraction", "split_fraction", float, "share of split-screen calls; the rest are single-camera"),
    ("--identities", "n_identities", int, "identity bank size"),
    ("--identity-seed", "identity_seed", int, "seed of the identity bank"),
    ("--workers", "workers", int, "parallel worker processes"),
    ("--preset", "encoder_preset", str, "x264 preset"),
)


def _default_cache() -> Path:
    from infra.local.settings import StackSettings

    return StackSettings.from_env().home / "cache" / "identities"


def _add_config_args(p: argparse.ArgumentParser, **overrides: Any) -> None:
    from lpm_models.data.synth.corpus import CorpusConfig

    defaults = CorpusConfig()
    for flag, name, kind, help_text in CONFIG_FLAGS:
        default = overrides.get(name, getattr(defaults, name))
        p.add_argument(flag, dest=name, type=kind, default=default, metavar=flag[2:].upper(),
                       help=f"{help_text} (default {default})")
    p.add_argument("--cache-dir", type=Path, default=None,
                   help="identity bank cache (default: $LPM_HOME/cache/identities)")


def _config(args: argparse.Namespace) -> Any:
    from lpm_models.data.synth.corpus import CorpusConfig

    return CorpusConfig(**{name: getattr(args, name) for _, name, _, _ in CONFIG_FLAGS})


def _generate(args: argparse.Namespace) -> int:
    from lpm_models.data.synth.corpus import generate_corpus

    config = _config(args)
    manifest = generate_corpus(config, args.out, cache_dir=args.cache_dir or _default_cache(),
                               progress=lambda done, total, rec: print(f"  [{done}/{total}] {rec.raw}"))
    wall = manifest.times.get("wall", 0.0)
    print(f"wrote {len(manifest.videos)} videos ({manifest.total_duration_s:.1f} s) to {args.out}")
    print(f"manifest: {manifest.path}")
    print(f"generation: {wall:.1f} s wall, {manifest.total_duration_s / max(wall, 1e-9):.1f}x real time")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from lpm_models.data.synth.corpus import generate_corpus, load_bank

    config = _config(args)
    t0 = time.perf_counter()
    bank = load_bank(config, args.cache_dir or _default_cache())
    bank_s = time.perf_counter() - t0
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lpm-corpus-bench-") as tmp:
        manifest = generate_corpus(config, Path(tmp), bank=bank)
    times, video_s = manifest.times, manifest.total_duration_s
    rate = video_s / max(times["wall"], 1e-9)
    busy = sum(times[k] for k in ("tts", "perform", "render", "encode"))
    print(f"identity bank: {bank_s:.1f} s (cached after the first build)")
    print(f"generated {len(manifest.videos)} videos, {video_s:.1f} s of video in {times['wall']:.1f} s "
          f"with {config.workers} worker(s), size {config.size}, preset {config.encoder_preset}")
    for key in ("tts", "perform", "render", "encode"):
        print(f"  {key:<8} {times[key]:7.2f} s  ({100 * times[key] / max(busy, 1e-9):4.1f}% of worker time)")
    cpu = times.get("cpu", 0.0)
    print(f"worker CPU: {cpu:.1f} s = {1000 * cpu / max(video_s * config.fps, 1):.2f} ms per frame; "
          f"{video_s * config.workers / max(cpu, 1e-9):.1f}x real time if {config.workers} cores were free")
    cores = os.cpu_count() or 1
    if load_before > 0.5 * cores:
        print(f"note: load average was {load_before:.1f} on {cores} cores before the run; "
              "other work on this machine slows the wall-clock figure")
    print(f"throughput: {rate:.1f} s of video per wall second (target {args.target:g})")
    if rate < args.target:
        print(f"FAIL: below the target of {args.target:g}x real time")
        return 1
    print("OK")
    return 0


def _identities(args: argparse.Namespace) -> int:
    from lpm_models.data.synth.identities import IdentityBank, write_contact_sheet

    bank = IdentityBank.build(n=args.n, seed=args.identity_seed, cache_dir=args.cache_dir or _default_cache())
    report = bank.distance_report()
    print(f"identity bank: {len(bank.identities)} identities; pairwise dlib distances "
          "(same person < 0.6):")
    for key, value in report.items():
        shown = f"{value:.3f}" if isinstance(value, float) else json.dumps(value, default=str)
        print(f"  {key:<20} {shown}")
    sheet = args.sheet or _default_cache().parent.parent / "reports" / "identities.png"
    out = write_contact_sheet(bank, sheet, tile=args.tile)
    print(f"contact sheet: {out}")
    return 0


def register(sub: Any, name: str, help_text: str) -> None:
    """Add `lpm corpus` and its subcommands to the top-level parser."""
    p = sub.add_parser(name, help=help_text, description=(
        "Synthetic two-person conversations (split-screen calls and single-camera shots) with "
        "espeak-ng voices, rendered faces, H.264+AAC MP4s and ground-truth sidecars kept apart."))
    cmds = p.add_subparsers(dest="corpus_command", metavar="SUBCOMMAND")

    gen = cmds.add_parser("generate", help="write a corpus (raw/, truth/, manifest.json)",
                          description="Generate a deterministic corpus into --out.")
    gen.add_argument("--out", type=Path, required=True, help="output directory")
    _add_config_args(gen)
    gen.set_defaults(func=_generate)

    bench = cmds.add_parser("bench", help="measure generation speed (seconds of video per wall second)",
                            description="Generate a throwaway corpus and report its speed; "
                                        "exit 1 below --target.")
    bench.add_argument("--target", type=float, default=10.0, help="minimum x real time (default %(default)s)")
    _add_config_args(bench)  # the demo workload: startup is amortised as it is there
    bench.set_defaults(func=_bench)

    ids = cmds.add_parser("identities", help="identity distance report and contact sheet",
                          description="Print the dlib pairwise distance report and write a contact sheet.")
    ids.add_argument("--n", type=int, default=24, help="identities (default %(default)s)")
    ids.add_argument("--identity-seed", type=int, default=0, help="seed of the bank (default %(default)s)")
    ids.add_argument("--sheet", type=Path, default=None,
                     help="contact sheet PNG (default: $LPM_HOME/reports/identities.png)")
    ids.add_argument("--tile", type=int, default=160, help="tile size in px (default %(default)s)")
    ids.add_argument("--cache-dir", type=Path, default=None,
                     help="identity bank cache (default: $LPM_HOME/cache/identities)")
    ids.set_defaults(func=_identities)

    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
