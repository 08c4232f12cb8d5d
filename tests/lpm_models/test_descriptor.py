"""The model descriptor contract: round trip, required files per kind, clear errors."""

from __future__ import annotations

import json

import pytest

from lpm_models.descriptor import DESCRIPTOR_PATH, FORMAT, DescriptorError, FileRef, ModelDescriptor

SHA = "ab" * 32


def online() -> ModelDescriptor:
    return ModelDescriptor(kind="online", preset="tiny",
                           files={"online": FileRef(uri="s3://lpm-models/online/r1/online.pt", sha256=SHA, bytes=10),
                                  "vae": FileRef(uri="s3://lpm-models/vae/r0/vae.pt", sha256="cd" * 32, bytes=5)},
                           lineage={"dataset_version": "v1", "teacher": "lpm-base/3"})


def test_round_trip_is_exact_and_stable() -> None:
    desc = online()
    text = desc.to_json()
    assert ModelDescriptor.from_json(text) == desc
    assert ModelDescriptor.from_json(text.encode()).to_json() == text
    data = json.loads(text)
    assert data["format"] == FORMAT == "lpm-model/1" and data["files"]["vae"]["bytes"] == 5
    assert DESCRIPTOR_PATH == "model/lpm_model.json"
    assert desc.file("online").sha256 == SHA


@pytest.mark.parametrize(("kind", "files", "missing"), [
    ("online", ["online"], "vae"), ("base", ["vae"], "base"), ("vae", ["base"], "vae")])
def test_each_kind_must_list_its_files(kind: str, files: list[str], missing: str) -> None:
    refs = {n: FileRef(uri=f"s3://b/{n}.pt", sha256=SHA, bytes=1) for n in files}
    with pytest.raises(DescriptorError, match=f"missing \\['{missing}'\\]"):
        ModelDescriptor(kind=kind, preset="tiny", files=refs)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.update(format="lpm-model/2"), "not supported"),
    (lambda d: d.update(kind="teacher"), "kind must be one of"),
    (lambda d: d.update(preset=""), "preset"),
    (lambda d: d.pop("lineage"), "missing \\['lineage'\\]"),
    (lambda d: d.update(extra=1), "unknown \\['extra'\\]"),
    (lambda d: d["files"]["vae"].update(sha256="XYZ"), "64 lower-case hex"),
    (lambda d: d["files"]["vae"].update(bytes=-1), "non-negative"),
    (lambda d: d["files"]["vae"].update(uri="/local/vae.pt"), "object URI"),
    (lambda d: d["files"]["vae"].pop("bytes"), "files.vae: missing"),
    (lambda d: d["lineage"].update(step=3), "strings to strings"),
])
def test_invalid_descriptors_raise_actionable_errors(mutate, message: str) -> None:
    data = online().to_dict()
    mutate(data)
    with pytest.raises(DescriptorError, match=message):
        ModelDescriptor.from_dict(data)


def test_not_json_and_unknown_file_name() -> None:
    with pytest.raises(DescriptorError, match="not valid JSON"):
        ModelDescriptor.from_json("{")
    with pytest.raises(KeyError, match="lists \\['online', 'vae'\\]"):
        online().file("base")


def test_descriptor_module_is_pure() -> None:
    import lpm_models.descriptor as module

    source = open(module.__file__).read()
    assert "import mlflow" not in source and "import dagster" not in source and "import torch" not in source
