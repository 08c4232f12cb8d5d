"""`lpm ingest` — probe local videos, or upload them to the raw bucket for the ingestion sensor."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction, name: str, help_text: str) -> None:
    p = sub.add_parser(name, help=help_text, description="Probe or upload raw conversation videos.")
    cmds = p.add_subparsers(dest="ingest_command", metavar="ACTION", required=True)
    probe = cmds.add_parser("probe", help="probe local files and print what ingestion would record")
    probe.add_argument("files", nargs="+", type=Path)
    probe.set_defaults(func=_probe)
    upload = cmds.add_parser("upload", help="upload files to s3://lpm-raw/videos/ (the sensor ingests them)")
    upload.add_argument("files", nargs="+", type=Path)
    upload.set_defaults(func=_upload)


def _probe(args: argparse.Namespace) -> int:
    from lpm_models.media.probe import ProbeError, probe_video

    bad = 0
    for path in args.files:
        try:
            print(json.dumps({"file": str(path), "status": "ok", **probe_video(path).to_dict()}))
        except ProbeError as err:
            bad += 1
            print(json.dumps({"file": str(path), "status": "rejected", "reason": err.reason, "detail": err.detail}))
    return 1 if bad else 0


def _upload(args: argparse.Namespace) -> int:
    from infra.local.settings import StackSettings
    from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX
    from orchestration.pipeline import ensure_env
    from orchestration.resources import object_store_from_env

    ensure_env(StackSettings.from_env().client_env())
    store = object_store_from_env()
    for path in args.files:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is not a file")
        info = store.put_file(RAW_BUCKET, RAW_PREFIX + path.name, path, content_type="video/mp4")
        print(f"uploaded {path} -> {info['uri']} (sha256 {str(info['sha256'])[:12]}...)")
    print("The raw_video_sensor adds a partition and ingests each new object within ~30 s (Dagster UI -> Sensors).")
    return 0
