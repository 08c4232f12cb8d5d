"""`lpm stream` / `lpm serve`: argument parsing (the streaming itself is tested against Triton in tests/serving)."""

from __future__ import annotations

import argparse

import pytest

from orchestration.cli import build_parser
from orchestration.cli.stream import _prompt_update


def test_stream_arguments_parse() -> None:
    argv = ["stream", "--image", "a.png", "--reference", "r1.png", "--reference", "r2.png", "--speech", "s.wav",
            "--prompt-at", "3:laughs", "--realtime", "--version", "2"]
    args = build_parser(argv).parse_args(argv)
    assert [str(p) for p in args.reference] == ["r1.png", "r2.png"] and args.prompt_at == [(3, "laughs")]
    assert args.realtime and args.version == "2" and args.model == "lpm-online" and args.user_speech is None
    with pytest.raises(argparse.ArgumentTypeError, match="CHUNK:TEXT"):
        _prompt_update("laughs")


def test_serve_bench_arguments_parse() -> None:
    argv = ["serve", "bench", "--streams", "3", "--check", "--target-rtf", "0.9"]
    args = build_parser(argv).parse_args(argv)
    assert args.streams == 3 and args.check and args.target_rtf == 0.9
