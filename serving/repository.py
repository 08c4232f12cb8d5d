"""Triton model repository builder for a registered Online LPM version.

    build_model(repo, descriptor, registered_model="lpm-online", version=3, run_id="...")

writes::

    <repo>/<triton_model>/config.pbtxt          python backend, sequence batcher (direct), decoupled,
                                                 parameters: tunables + every version's weights
    <repo>/<triton_model>/<N>/model.py          a copy of serving/triton_model.py (thin adapter)
    <repo>/<triton_model>/<N>/provenance.json   registered model + version, run, lineage, checksums

MLflow version N is Triton version N. Versions already in the folder stay listed, so two
versions are served side by side (``version_policy { specific }``). The weights stay in
the object store; the adapter fetches and verifies them when Triton loads the version.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lpm_models.descriptor import ModelDescriptor
from serving.contract import CORRID, END, INPUTS, OUTPUTS, READY, START, TensorSpec
from serving.params import REGISTERED_MODEL, ServingParams, VersionFiles

log = logging.getLogger(__name__)

PROVENANCE = "provenance.json"
PROVENANCE_FORMAT = "lpm-triton-provenance/1"
ADAPTER = Path(__file__).with_name("triton_model.py")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class BuiltModel:
    """What ``build_model`` wrote."""

    name: str
    version: int
    directory: Path
    config_path: Path
    provenance_path: Path
    versions: tuple[int, ...]


@dataclass(frozen=True)
class ServeSettings:
    """How a model folder is served: tunables, instances, sequence slots per instance."""

    params: ServingParams = ServingParams()
    instances: int = 1
    max_sessions: int = 8


_PARAM = re.compile(r'\{ key: ("(?:[^"\\]|\\.)*") value: \{ string_value: ("(?:[^"\\]|\\.)*") \} \}')


def _tensor(spec: TensorSpec, optional: bool) -> str:
    dims = ", ".join(str(d) for d in spec.dims)
    extra = " optional: true" if optional else ""
    return f'  {{ name: "{spec.name}" data_type: TYPE_{spec.triton_type} dims: [ {dims} ]{extra} }}'


def _control(name: str, kind: str) -> str:
    if kind == "CONTROL_SEQUENCE_CORRID":
        body = f"kind: {kind} data_type: TYPE_UINT64"
    else:
        body = f"kind: {kind} int32_false_true: [ 0, 1 ]"
    return f'    {{ name: "{name}" control [ {{ {body} }} ] }}'


def _quote(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid protobuf text-format string


def render_config(name: str, versions: Sequence[int], settings: ServeSettings, weights: Sequence[VersionFiles],
                  registered_model: str) -> str:
    """The ``config.pbtxt`` text."""
    params = settings.params
    controls = [(START, "CONTROL_SEQUENCE_START"), (END, "CONTROL_SEQUENCE_END"),
                (READY, "CONTROL_SEQUENCE_READY"), (CORRID, "CONTROL_SEQUENCE_CORRID")]
    parameters = {REGISTERED_MODEL: registered_model, **params.to_parameters()}
    for files in weights:
        parameters.update(files.to_parameters())
    lines = [
        f"name: {_quote(name)}",
        'backend: "python"',
        f"max_batch_size: {settings.max_sessions}",
        f"version_policy: {{ specific: {{ versions: [ {', '.join(str(v) for v in sorted(versions))} ] }} }}",
        "input [",
        ",\n".join(_tensor(s, optional=True) for s in INPUTS),
        "]",
        "output [",
        ",\n".join(_tensor(s, optional=False) for s in OUTPUTS),
        "]",
        "model_transaction_policy { decoupled: true }",
        "sequence_batching {",
        f"  max_sequence_idle_microseconds: {int(params.idle_timeout_s * 1_000_000)}",
        "  control_input [",
        ",\n".join(_control(n, k) for n, k in controls),
        "  ]",
        "  direct { }",
        "}",
        f"instance_group [ {{ kind: KIND_CPU count: {settings.instances} }} ]",
        "parameters [",
        ",\n".join(f"  {{ key: {_quote(k)} value: {{ string_value: {_quote(v)} }} }}"
                   for k, v in sorted(parameters.items())),
        "]",
    ]
    return "\n".join(lines) + "\n"


def provenance_record(descriptor: ModelDescriptor, *, registered_model: str, version: int, run_id: str,
                      triton_model: str, built_at: datetime) -> dict[str, Any]:
    """The provenance of one served version (walks back to the MLflow model and its data)."""
    return {
        "format": PROVENANCE_FORMAT,
        "registered_model": registered_model,
        "model_version": version,
        "run_id": run_id,
        "triton_model": triton_model,
        "triton_version": version,
        "dataset_version": descriptor.lineage.get("dataset_version", ""),
        "lineage": dict(descriptor.lineage),
        "preset": descriptor.preset,
        "checksums": {name: ref.sha256 for name, ref in sorted(descriptor.files.items())},
        "descriptor": descriptor.to_dict(),
        "built_at": built_at.astimezone(UTC).isoformat(timespec="seconds"),
    }


def read_parameters(config_path: Path) -> dict[str, str]:
    """The ``parameters`` of a config.pbtxt this module wrote (empty if there is none)."""
    if not config_path.is_file():
        return {}
    return {json.loads(k): json.loads(v) for k, v in _PARAM.findall(config_path.read_text())}


def read_settings(config_path: Path) -> ServeSettings | None:
    """The settings of a config.pbtxt this module wrote (None if there is none)."""
    if not config_path.is_file():
        return None
    text = config_path.read_text()
    parameters = read_parameters(config_path)
    batch = re.search(r"^max_batch_size: (\d+)", text, re.M)
    count = re.search(r"kind: KIND_CPU count: (\d+)", text)
    return ServeSettings(ServingParams.from_parameters(parameters), int(count.group(1)) if count else 1,
                         int(batch.group(1)) if batch else 8)


def read_provenance(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text())
    if data.get("format") != PROVENANCE_FORMAT:
        raise ValueError(f"{path} is not a {PROVENANCE_FORMAT} file")
    return data


def _version_files(record: dict[str, Any]) -> VersionFiles:
    descriptor = ModelDescriptor.from_dict(record["descriptor"])
    return VersionFiles(version=int(record["model_version"]), files=dict(descriptor.files), run_id=record["run_id"])


def _check_inputs(descriptor: ModelDescriptor, name: str, version: int, instances: int, max_sessions: int) -> None:
    if descriptor.kind != "online":
        raise ValueError(f"only 'online' models are served by Triton; this descriptor is kind {descriptor.kind!r}")
    if not _NAME.match(name):
        raise ValueError(f"Triton model name {name!r} may hold letters, digits, '_', '.', '-' only")
    if version < 1:
        raise ValueError(f"model version must be >= 1 (MLflow version N is Triton version N), got {version}")
    if instances < 1 or max_sessions < 1:
        raise ValueError("instances and max_sessions must be >= 1")


def _existing(model_dir: Path, registered_model: str) -> dict[int, dict[str, Any]]:
    records: dict[int, dict[str, Any]] = {}
    for path in sorted(model_dir.glob(f"*/{PROVENANCE}")):
        if not path.parent.name.isdigit():
            continue
        record = read_provenance(path)
        if record["registered_model"] != registered_model:
            raise ValueError(f"{model_dir} serves {record['registered_model']!r}, not {registered_model!r}; "
                             "choose another triton_model name")
        records[int(path.parent.name)] = record
    return records


def build_model(repository: Path, descriptor: ModelDescriptor, *, registered_model: str, version: int,
                run_id: str, triton_model: str | None = None, settings: ServeSettings | None = None,
                serve_versions: Sequence[int] | None = None, built_at: datetime | None = None) -> BuiltModel:
    """Write (or add) version ``version`` of a served model; returns what was written.

    settings: tunables / instances / slots (default: those of the existing config, else defaults).
    serve_versions: versions the config lists (default: every version in the folder).
    Rebuilding a version with identical weights is a no-op for its files; different
    weights under an existing version number are refused.
    """
    name = triton_model or registered_model
    model_dir = Path(repository) / name
    settings = settings or read_settings(model_dir / "config.pbtxt") or ServeSettings()
    _check_inputs(descriptor, name, version, settings.instances, settings.max_sessions)
    records = _existing(model_dir, registered_model)
    record = provenance_record(descriptor, registered_model=registered_model, version=version, run_id=run_id,
                               triton_model=name, built_at=built_at or datetime.now(UTC))
    if version in records and records[version]["checksums"] != record["checksums"]:
        raise ValueError(f"version {version} of {name} is already in {model_dir} with other weights "
                         f"({records[version]['checksums']}); remove it with remove_version first")
    version_dir = model_dir / str(version)
    version_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ADAPTER, version_dir / "model.py")
    provenance_path = version_dir / PROVENANCE
    if version not in records:
        _write(provenance_path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        records[version] = record
    versions = tuple(sorted(serve_versions if serve_versions is not None else records))
    unknown = [v for v in versions if v not in records]
    if unknown:
        raise ValueError(f"cannot serve versions {unknown}: they are not in {model_dir}")
    config_path = model_dir / "config.pbtxt"
    _write(config_path, render_config(name, versions, settings, [_version_files(records[v]) for v in versions],
                                      registered_model))
    log.info("Triton model %s version %d written to %s (serving versions %s)", name, version, model_dir, versions)
    return BuiltModel(name, version, model_dir, config_path, provenance_path, versions)


def remove_version(repository: Path, triton_model: str, version: int) -> tuple[int, ...]:
    """Delete a version's folder and drop it from the config (settings kept); returns the rest."""
    model_dir = Path(repository) / triton_model
    settings = read_settings(model_dir / "config.pbtxt") or ServeSettings()
    records = {v: r for v, r in _existing_any(model_dir).items() if v != version}
    shutil.rmtree(model_dir / str(version), ignore_errors=True)
    if not records:
        (model_dir / "config.pbtxt").unlink(missing_ok=True)
        return ()
    registered = next(iter(records.values()))["registered_model"]
    versions = tuple(sorted(records))
    _write(model_dir / "config.pbtxt", render_config(
        triton_model, versions, settings, [_version_files(records[v]) for v in versions], registered))
    log.info("Triton model %s: version %d removed, serving %s", triton_model, version, versions)
    return versions


def _existing_any(model_dir: Path) -> dict[int, dict[str, Any]]:
    return {int(p.parent.name): read_provenance(p) for p in model_dir.glob(f"*/{PROVENANCE}")
            if p.parent.name.isdigit()}


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
