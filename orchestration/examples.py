"""Ready-to-run inputs for the served model: a character image and two speech tracks from the data.

    ex = write_examples(object_store, descriptor.lineage, Path("$LPM_HOME/examples"))
    ex.command(model="lpm-online", version="3")
    # lpm stream --image .../character.png --speech .../speech.wav --user-speech .../user.wav ...

The inputs come from the model's own curated dataset (the descriptor's ``dataset_manifest``):
the clip that speaks the most gives its appearance reference (the character image), its own
speech and the interlocutor's speech. They are written once per dataset version
(``source.json`` says which clip) and reused; the smoke check streams the same files.
"""

from __future__ import annotations

import json
import logging
import shlex
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lpm_models.data.dataset.shards import iter_samples
from orchestration.assets.training_support import split_s3
from orchestration.resources import ObjectStoreResource
from serving.media import write_wav

log = logging.getLogger(__name__)

FILES = {"image": "character.png", "speech": "speech.wav", "user_speech": "user.wav"}
SOURCE = "source.json"


@dataclass(frozen=True)
class Examples:
    """Paths of the example inputs and where they came from."""

    directory: Path
    source: dict[str, Any]

    @property
    def image(self) -> Path:
        return self.directory / FILES["image"]

    @property
    def speech(self) -> Path:
        return self.directory / FILES["speech"]

    @property
    def user_speech(self) -> Path:
        return self.directory / FILES["user_speech"]

    def command(self, model: str, version: str | int, out: Path | None = None, seconds: float | None = None) -> str:
        """A ``lpm stream`` command line on these files against ``model`` version ``version``."""
        args = ["lpm", "stream", "--model", model, "--version", str(version), "--image", str(self.image),
                "--speech", str(self.speech), "--user-speech", str(self.user_speech),
                "--out", str(out or self.directory / f"{model}-v{version}.mp4")]
        if seconds:
            args += ["--seconds", f"{seconds:g}"]
        return shlex.join(args)


def _pick_clip(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    clips = list(manifest.get("clips") or [])
    if not clips:
        raise ValueError(f"dataset {manifest.get('version')} lists no clips; cannot pick example inputs")
    return max(clips, key=lambda c: (float(c.get("speak_frac", 0.0)), float(c.get("duration_s", 0.0)), c["clip_id"]))


def _pcm(data: bytes) -> np.ndarray:
    import io

    return np.load(io.BytesIO(data), allow_pickle=False).astype(np.float32) / 32768.0


def write_examples(store: ObjectStoreResource, lineage: Mapping[str, str], directory: Path) -> Examples:
    """Write (or reuse) the example inputs of the dataset named by ``lineage['dataset_manifest']``."""
    manifest_uri = lineage.get("dataset_manifest", "")
    if not manifest_uri:
        raise ValueError("the model's descriptor names no dataset_manifest in its lineage; cannot take example "
                         "inputs from its data")
    directory.mkdir(parents=True, exist_ok=True)
    source_path = directory / SOURCE
    if source_path.is_file() and all((directory / f).is_file() for f in FILES.values()):
        source = json.loads(source_path.read_text())
        if source.get("dataset_manifest") == manifest_uri:
            return Examples(directory, source)
    bucket, key = split_s3(manifest_uri)
    manifest = json.loads(store.get_bytes(bucket, key))
    clip = _pick_clip(manifest)
    shard_key = f"{key.rsplit('/', 1)[0]}/{clip['shard']}"
    with tempfile.TemporaryDirectory(prefix="lpm-examples-") as tmp:
        shard = store.get_file(bucket, shard_key, Path(tmp) / clip["shard"])
        raw = next((s for s in iter_samples([shard]) if s["__key__"] == clip["key"]), None)
    if raw is None:
        raise ValueError(f"clip {clip['key']} is not in s3://{bucket}/{shard_key}; the dataset is inconsistent")
    rate = int(clip["sample_rate"])
    (directory / FILES["image"]).write_bytes(raw["ref_appearance.png"])
    write_wav(directory / FILES["speech"], _pcm(raw["self.npy"]), rate)
    write_wav(directory / FILES["user_speech"], _pcm(raw["other.npy"]), rate)
    source = {"dataset_manifest": manifest_uri, "dataset_version": manifest.get("version", ""),
              "clip_id": clip["clip_id"], "identity": clip.get("identity", ""), "speak_frac": clip.get("speak_frac"),
              "duration_s": clip.get("duration_s"), "sample_rate": rate}
    source_path.write_text(json.dumps(source, indent=1, sort_keys=True))
    log.info("example inputs from clip %s of dataset %s written to %s", clip["clip_id"], source["dataset_version"],
             directory)
    return Examples(directory, source)
