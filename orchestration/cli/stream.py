"""`lpm stream` — talk to a served Online LPM: audio in, video out (an MP4 with the character's speech)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any


def default_url() -> str:
    """``LPM_TRITON_GRPC_URL``, else the local stack's Triton gRPC address."""
    if os.environ.get("LPM_TRITON_GRPC_URL"):
        return os.environ["LPM_TRITON_GRPC_URL"]
    from infra.local.settings import StackSettings

    return StackSettings.from_env().triton_grpc_url


def _prompt_update(text: str) -> tuple[int, str]:
    chunk, sep, prompt = text.partition(":")
    if not sep or not chunk.strip().isdigit() or not prompt.strip():
        raise argparse.ArgumentTypeError(f"--prompt-at takes CHUNK:TEXT (e.g. 12:laughs), got {text!r}")
    return int(chunk), prompt.strip()


def register(sub: Any, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description=(
        "Open a session on the served Online LPM (Triton, gRPC bidirectional streaming), stream the "
        "character's speech and the user's speech chunk by chunk, and write the returned frames with "
        "the character's speech to an MP4. Prints time to first frame, per-chunk latency and the "
        "real-time factor."))
    p.add_argument("--image", type=Path, required=True, help="character image (any format PIL reads)")
    p.add_argument("--reference", type=Path, action="append", default=[],
                   help="identity reference image (repeatable)")
    p.add_argument("--prompt", help="text prompt for the character's motion")
    p.add_argument("--prompt-at", type=_prompt_update, action="append", default=[], metavar="CHUNK:TEXT",
                   help="change the prompt from chunk CHUNK on (repeatable)")
    p.add_argument("--speech", type=Path, required=True, help="the character's speech (WAV or any audio/video file)")
    p.add_argument("--user-speech", type=Path, help="the user's speech (default: silence)")
    p.add_argument("--out", type=Path, default=Path("lpm_stream.mp4"), help="output MP4 (default %(default)s)")
    p.add_argument("--realtime", action="store_true",
                   help="pace chunks at real time like a live microphone (default: as fast as possible)")
    p.add_argument("--seconds", type=float, help="stream at most this many seconds")
    p.add_argument("--seed", type=int, help="session seed (default: derived from the session id)")
    p.add_argument("--model", default="lpm-online", help="Triton model name (default %(default)s)")
    p.add_argument("--version", default="", help="model version (default: the server's choice)")
    p.add_argument("--url", default=None, help="Triton gRPC host:port (default: $LPM_TRITON_GRPC_URL or the local stack)")
    p.add_argument("--json", action="store_true", help="print the statistics as one JSON object")
    p.set_defaults(func=_stream)


def _progress(report: Any, total: int) -> None:
    if not sys.stderr.isatty():  # logs: one line per tenth of the stream
        if report.chunks % max(1, total // 10) == 0 or report.chunks == total:
            logging.getLogger("lpm.stream").info("chunk %d/%d, %d frames, rtf %.2f, %d errors", report.chunks, total,
                                                 report.frames, report.rtf or 0.0, len(report.errors))
        return
    rtf = report.rtf
    sys.stderr.write(f"\r  chunk {report.chunks}/{total}  frames {report.frames}  "
                     f"last {report.latencies[-1] * 1000:.0f} ms  rtf {rtf:.2f}  errors {len(report.errors)}   ")
    if report.chunks >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def _stream(args: argparse.Namespace) -> int:
    from serving.stream import StreamJob, stream_to_mp4

    job = StreamJob(url=args.url or default_url(), model=args.model, version=args.version, image=args.image,
                    references=tuple(args.reference), prompt=args.prompt, prompts=dict(args.prompt_at),
                    speech=args.speech, user_speech=args.user_speech, out=args.out, realtime=args.realtime,
                    seed=args.seed, max_seconds=args.seconds)
    result = stream_to_mp4(job, progress=_progress)
    summary = {"out": str(result.out), "model": result.info.get("model"), "version": result.info.get("version"),
               "session": result.info.get("session"), "seed": result.info.get("seed"),
               "frames_written": result.frames_written, **result.report.summary()}
    if args.json:
        print(json.dumps(summary))
    else:
        s = summary

        def ms(x: float | None) -> str:
            return "-" if x is None else f"{x * 1000:.0f} ms"

        print(f"wrote {s['out']}: {s['frames_written']} frames, {s['media_s']:.2f} s of audio "
              f"({s['model']} v{s['version']}, session {s['session']}, seed {s['seed']})")
        print(f"time to first frame {ms(s['ttff_s'])}  (session open {ms(s['open_s'])})")
        print(f"per chunk  p50 {ms(s['chunk_p50_s'])}  p95 {ms(s['chunk_p95_s'])}  p99 {ms(s['chunk_p99_s'])}")
        speed = f"{1 / s['rtf']:.2f}x real time" if s["rtf"] else "-"
        print(f"real-time factor {s['rtf']:.3f} = processing / media time, speed {speed}  "
              f"({'paced at real time' if s['realtime'] else 'as fast as possible'})  errors {s['errors']}")
    return 1 if result.report.errors else 0
