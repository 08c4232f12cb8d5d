"""Repository builder, config parameters and verified weights fetching (no Triton, no store)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from lpm_models.descriptor import FileRef, ModelDescriptor
from serving import contract as C
from serving.loader import engine_from_files
from serving.params import ServingParams, VersionFiles, config_parameters
from serving.repository import (
    ADAPTER,
    ServeSettings,
    build_model,
    read_provenance,
    read_settings,
    remove_version,
)
from serving.store import ChecksumMismatch, fetch_verified
from tests.serving.factory import descriptor_for, write_model_files

BUILT_AT = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return write_model_files(tmp_path_factory.mktemp("weights"))


def descriptor(files: dict[str, Path], dataset: str = "ds-test-1") -> ModelDescriptor:
    uris = {k: f"s3://lpm-models/online/run-abc/{p.name}" for k, p in files.items()}
    return ModelDescriptor.from_dict(descriptor_for(files, uris, dataset))


def local_descriptor(files: dict[str, Path]) -> ModelDescriptor:
    return ModelDescriptor.from_dict(descriptor_for(files, {k: p.as_uri() for k, p in files.items()}))


def test_config_pbtxt_declares_the_contract(tmp_path: Path, files: dict[str, Path]) -> None:
    settings = ServeSettings(ServingParams(idle_timeout_s=12.5, threads=2, frames_per_response=3), instances=2,
                             max_sessions=4)
    built = build_model(tmp_path, descriptor(files), registered_model="lpm-online", version=3, run_id="run-abc",
                        settings=settings, built_at=BUILT_AT)
    text = built.config_path.read_text()
    assert built.directory == tmp_path / "lpm-online" and built.versions == (3,)
    assert 'name: "lpm-online"' in text and 'backend: "python"' in text
    assert "max_batch_size: 4" in text and "instance_group [ { kind: KIND_CPU count: 2 } ]" in text
    assert "model_transaction_policy { decoupled: true }" in text
    assert "version_policy: { specific: { versions: [ 3 ] } }" in text
    assert "max_sequence_idle_microseconds: 12500000" in text and "direct { }" in text
    for control in ("CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_READY"):
        assert control in text
    assert 'kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64' in text
    for spec in C.INPUTS:
        assert re.search(rf'name: "{spec.name}" data_type: TYPE_{spec.triton_type} dims: \[ [-0-9, ]+ \] optional: true', text)
    for spec in C.OUTPUTS:
        assert f'name: "{spec.name}" data_type: TYPE_{spec.triton_type}' in text
    assert (built.directory / "3" / "model.py").read_bytes() == ADAPTER.read_bytes()
    assert "/work/" not in text and str(Path.home()) not in text


def test_parameters_round_trip_through_the_config(tmp_path: Path, files: dict[str, Path]) -> None:
    settings = ServeSettings(ServingParams(idle_timeout_s=7.0, warmup=False, cache_dir="/x y"), 1, 2)
    d = descriptor(files)
    built = build_model(tmp_path, d, registered_model="lpm-online", version=1, run_id="r1", settings=settings)
    assert read_settings(built.config_path) == settings
    parsed = dict(re.findall(r'\{ key: "([^"]+)" value: \{ string_value: "([^"]*)" \} \}', built.config_path.read_text()))
    triton_json = {"parameters": {k: {"string_value": v} for k, v in parsed.items()}}
    params = config_parameters(triton_json)
    assert ServingParams.from_parameters(params) == settings.params
    assert VersionFiles.from_parameters(params, 1) == VersionFiles(1, dict(d.files), "r1")
    assert params["registered_model"] == "lpm-online"
    with pytest.raises(ValueError, match="no weights for version 2"):
        VersionFiles.from_parameters(params, 2)
    with pytest.raises(ValueError, match="not a valid int"):
        ServingParams.from_parameters({"threads": "two"})
    with pytest.raises(ValueError, match="threads must be >= 1"):
        ServingParams.from_parameters({"threads": "0"})


def test_provenance_names_the_registered_version_and_checksums(tmp_path: Path, files: dict[str, Path]) -> None:
    built = build_model(tmp_path, descriptor(files, "ds-2026-11-30"), registered_model="lpm-online", version=5,
                        run_id="run-xyz", triton_model="lpm_online", built_at=BUILT_AT)
    record = read_provenance(built.provenance_path)
    assert record["registered_model"] == "lpm-online" and record["model_version"] == 5
    assert record["triton_model"] == "lpm_online" and record["triton_version"] == 5
    assert record["run_id"] == "run-xyz" and record["dataset_version"] == "ds-2026-11-30"
    assert record["lineage"]["teacher"] == "lpm-base/3" and record["built_at"] == "2026-12-01T12:00:00+00:00"
    assert record["checksums"] == {k: json.loads(descriptor(files).to_json())["files"][k]["sha256"] for k in files}
    assert ModelDescriptor.from_dict(record["descriptor"]) == descriptor(files, "ds-2026-11-30")


def test_versions_are_served_side_by_side_and_removed(tmp_path: Path, files: dict[str, Path]) -> None:
    d = descriptor(files)
    settings = ServeSettings(ServingParams(idle_timeout_s=9.0), 1, 3)
    build_model(tmp_path, d, registered_model="lpm-online", version=1, run_id="r1", settings=settings)
    other = ModelDescriptor.from_dict({**d.to_dict(), "files": {
        k: {**v.to_dict(), "uri": v.uri.replace("run-abc", "run-def")} for k, v in d.files.items()}})
    built = build_model(tmp_path, other, registered_model="lpm-online", version=2, run_id="r2")
    text = built.config_path.read_text()
    assert built.versions == (1, 2) and "versions: [ 1, 2 ]" in text
    assert read_settings(built.config_path) == settings  # kept from the first build
    params = config_parameters({"parameters": {k: {"string_value": v} for k, v in re.findall(
        r'\{ key: "([^"]+)" value: \{ string_value: "([^"]*)" \} \}', text)}})
    assert "run-def" in VersionFiles.from_parameters(params, 2).files["online"].uri
    assert "run-abc" in VersionFiles.from_parameters(params, 1).files["online"].uri
    assert build_model(tmp_path, d, registered_model="lpm-online", version=1, run_id="r1").versions == (1, 2)
    assert remove_version(tmp_path, "lpm-online", 1) == (2,)
    assert "versions: [ 2 ]" in built.config_path.read_text() and not (built.directory / "1").exists()
    assert read_settings(built.config_path) == settings


def test_builder_refusals(tmp_path: Path, files: dict[str, Path]) -> None:
    d = descriptor(files)
    build_model(tmp_path, d, registered_model="lpm-online", version=1, run_id="r1")
    swapped = ModelDescriptor.from_dict({**d.to_dict(), "files": {
        k: {**v.to_dict(), "sha256": "0" * 64} for k, v in d.files.items()}})
    with pytest.raises(ValueError, match="already in .* with other weights"):
        build_model(tmp_path, swapped, registered_model="lpm-online", version=1, run_id="r1")
    with pytest.raises(ValueError, match="serves 'lpm-online', not 'lpm-other'"):
        build_model(tmp_path, d, registered_model="lpm-other", triton_model="lpm-online", version=2, run_id="r")
    with pytest.raises(ValueError, match="version must be >= 1"):
        build_model(tmp_path, d, registered_model="lpm-online", version=0, run_id="r")
    with pytest.raises(ValueError, match="model name"):
        build_model(tmp_path, d, registered_model="lpm online", version=1, run_id="r")
    vae_only = ModelDescriptor.from_dict({**d.to_dict(), "kind": "vae", "files": {"vae": d.files["vae"].to_dict()}})
    with pytest.raises(ValueError, match="only 'online' models"):
        build_model(tmp_path, vae_only, registered_model="lpm-vae", version=1, run_id="r")
    with pytest.raises(ValueError, match=r"versions \[7\]"):
        build_model(tmp_path, d, registered_model="lpm-online", version=2, run_id="r", serve_versions=[2, 7])


def test_fetch_refuses_a_checksum_or_size_mismatch(tmp_path: Path, files: dict[str, Path]) -> None:
    ref = local_descriptor(files).files["vae"]
    assert fetch_verified(ref, tmp_path) == files["vae"]
    with pytest.raises(ChecksumMismatch, match=f"sha256 .* but the model descriptor says {'f' * 64}; refusing"):
        fetch_verified(FileRef(uri=ref.uri, sha256="f" * 64, bytes=ref.bytes), tmp_path)
    with pytest.raises(ChecksumMismatch, match="bytes but the model descriptor says"):
        fetch_verified(FileRef(uri=ref.uri, sha256=ref.sha256, bytes=ref.bytes + 1), tmp_path)
    with pytest.raises(ChecksumMismatch):
        engine_from_files({**local_descriptor(files).files, "vae": FileRef(uri=ref.uri, sha256="f" * 64,
                                                                           bytes=ref.bytes)}, tmp_path)


def test_a_corrupt_cache_entry_is_not_used(tmp_path: Path, files: dict[str, Path]) -> None:
    ref = descriptor(files).files["online"]
    cached = tmp_path / f"{ref.sha256}-online.pt"
    cached.write_bytes(b"x" * ref.bytes)  # right size, wrong content; the store is unreachable

    class NoStore:
        def download(self, uri: str, path: Path) -> None:
            raise FileNotFoundError(f"cannot download {uri}")

    with pytest.raises(FileNotFoundError, match="cannot download"):
        fetch_verified(ref, tmp_path, NoStore())  # type: ignore[arg-type]
    assert not cached.exists()


def test_engine_loads_from_verified_files(tmp_path: Path, files: dict[str, Path]) -> None:
    engine = engine_from_files(dict(local_descriptor(files).files), tmp_path)
    session = engine.start(np.zeros((32, 32, 3), np.uint8), seed=1)
    frames = engine.step(session, np.zeros(engine.chunk_samples, np.float32), np.zeros(engine.chunk_samples, np.float32))
    assert frames.shape[1:] == (32, 32, 3) and frames.dtype == np.uint8


def test_the_weights_cache_never_shadows_the_serving_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Triton runs in $LPM_HOME with its working directory on the stub's sys.path: a folder named
    # like a package there ($LPM_HOME/serving) would be imported instead of the real one
    from serving.store import default_cache_dir

    monkeypatch.delenv("LPM_SERVING_CACHE", raising=False)
    monkeypatch.setenv("LPM_HOME", str(tmp_path))
    cache = default_cache_dir()
    assert cache.is_relative_to(tmp_path) and cache.relative_to(tmp_path).parts[0] not in {"serving", "lpm_models"}
    monkeypatch.setenv("LPM_SERVING_CACHE", str(tmp_path / "elsewhere"))
    assert default_cache_dir() == tmp_path / "elsewhere"
