"""`lpm model` — model presets: sizes, tokens and FLOPs (counted on the meta device); the champion's
promotion audit trail and its rollback (``orchestration.cli.release``); the training and streaming
benchmarks (``lpm_models.base.bench``, ``lpm_models.online.bench``)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(
        name, help=help_text,
        description="Inspect model presets. Sizes and FLOPs are measured on the meta device: nothing is allocated.",
    )
    cmds = p.add_subparsers(dest="model_command", metavar="ACTION", required=True)
    ls = cmds.add_parser("list", help="list preset names")
    ls.set_defaults(func=_list)
    info = cmds.add_parser("info", help="parameters, tokens per second of video, training/inference FLOPs")
    info.add_argument("preset", help="preset name (see `lpm model list`)")
    info.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    info.set_defaults(func=_info)
    from orchestration.cli.release import register_release

    register_release(cmds)
    _register_bench(cmds, "bench-train", "lpm_models.base.bench",
                    "Base LPM training throughput and peak RSS per rank: FSDP2 on 2 CPU ranks vs 1 process")
    _register_bench(cmds, "bench-stream", "lpm_models.online.bench",
                    "Online LPM streaming: real-time factor, TTFF, cost vs Base LPM, RSS over a long stream")


def _register_bench(cmds: argparse._SubParsersAction, name: str, module: str, help_text: str) -> None:
    """A pass-through subcommand: every argument (``--help`` too) goes to ``module.main``."""
    p = cmds.add_parser(name, help=help_text, add_help=False, prefix_chars="\x00",
                        description=f"{help_text}. Arguments are those of `python -m {module} --help`.")
    p.add_argument("bench_args", nargs=argparse.REMAINDER, help=f"arguments of python -m {module}")
    p.set_defaults(func=_run_bench, bench_module=module, bench_prog=f"lpm model {name}")


def _run_bench(args: argparse.Namespace) -> int:
    import importlib

    return int(importlib.import_module(args.bench_module).main(list(args.bench_args), prog=args.bench_prog))


def _list(args: argparse.Namespace) -> int:
    from lpm_models.configs import list_presets

    for name in list_presets():
        print(name)
    return 0


def _human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {suffix}{unit}"
    return f"{n:.3g} {unit}".rstrip()


def _info(args: argparse.Namespace) -> int:
    from lpm_models.configs import flops_per_second, get_preset, parameter_breakdown, tokens_per_second

    try:
        cfg = get_preset(args.preset)
    except KeyError as err:
        raise ValueError(str(err.args[0])) from err
    params = parameter_breakdown(cfg)
    flops = flops_per_second(cfg)
    h, w = cfg.latent_size
    summary = {
        "preset": cfg.name,
        "video": {"height": cfg.height, "width": cfg.width, "fps": cfg.fps, "clip_frames": cfg.clip_frames},
        "latent": {"channels": cfg.vae.latent_channels, "height": h, "width": w,
                   "spatial_factor": cfg.vae.spatial_factor, "temporal_factor": cfg.vae.temporal_factor},
        "dit": {"dim": cfg.dit.dim, "depth": cfg.dit.depth, "heads": cfg.dit.heads, "ffn_dim": cfg.dit.ffn_dim,
                "patch_size": cfg.dit.patch_size},
        "parameters": params,
        "tokens_per_latent_frame": cfg.tokens_per_latent_frame,
        "tokens_per_video_second": tokens_per_second(cfg),
        "flops": flops,
        "sampler": {"steps": cfg.sampler.steps, "guidance_passes": 3, "chunk_latents": cfg.sampler.chunk_latents,
                    "overlap_latents": cfg.sampler.overlap_latents},
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"preset {cfg.name}: {cfg.height}x{cfg.width} @ {cfg.fps} fps, training clip {cfg.clip_frames} frames")
    print(f"  latent        {cfg.vae.latent_channels} x {h} x {w}, x{cfg.vae.spatial_factor} space, "
          f"x{cfg.vae.temporal_factor} time; DiT {cfg.dit.dim} wide, {cfg.dit.depth} deep, {cfg.dit.heads} heads")
    print(f"  parameters    Base LPM {_human(params['base_total'])} (DiT blocks {_human(params['dit_blocks'])}, "
          f"DiT other {_human(params['dit_other'])}, audio encoder {_human(params['audio_encoder'])}); "
          f"VAE {_human(params['vae'])}; frozen text encoder not counted")
    print(f"  tokens        {cfg.tokens_per_latent_frame} per latent frame, {tokens_per_second(cfg):.0f} per second of video")
    print(f"  train         {_human(flops['train_per_video_second'], 'FLOP')} per second of training video "
          f"(fwd+bwd; VAE encode {_human(flops['vae_encode_per_video_second'], 'FLOP')}/s once, offline)")
    print(f"  inference     {_human(flops['inference_per_generated_second'], 'FLOP')} per generated second "
          f"({cfg.sampler.steps} steps x 3 guidance passes: {_human(flops['sampling_per_generated_second'], 'FLOP')}; "
          f"VAE decode {_human(flops['vae_decode_per_generated_second'], 'FLOP')})")
    return 0
