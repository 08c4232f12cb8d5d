"""A training-shaped child process for the Pipes round-trip tests: it resolves ``--reporter`` exactly
like the training CLIs (``lpm_models.base.train.resolve_reporter``) and reports start, progress,
preview and done events (or crashes with ``--fail``)."""

from __future__ import annotations

import argparse

from lpm_models.base.train import resolve_reporter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--fail", action="store_true", help="raise after the progress events")
    parser.add_argument("--reporter", default="logging")
    args = parser.parse_args()
    reporter = resolve_reporter(args.reporter)
    reporter("start", {"preset": "tiny", "max_steps": args.steps, "ranks": 1})
    for step in range(1, args.steps + 1):
        reporter("progress", {"step": step, "max_steps": args.steps, "loss": 1.0 / step, "phase": "speak_alignment",
                              "samples_per_s": 2.5, "eta_s": float(args.steps - step)})
    if args.fail:
        raise RuntimeError("simulated training failure after the last step")
    reporter("preview", {"step": args.steps, "png": "previews/step.png", "mp4": "previews/step.mp4"})
    reporter("done", {"step": args.steps, "final_loss": 1.0 / args.steps, "seconds": 0.1, "path": "/scratch/x.pt"})


if __name__ == "__main__":
    main()
