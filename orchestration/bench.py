"""LPM-Bench wiring shared by ``lpm bench`` and the ``lpm_bench`` asset: registered models -> systems -> results.

``models:/lpm-online@challenger`` (or ``models:/lpm-base/3``) resolves through the MLflow registry
to the version's ``model/lpm_model.json`` descriptor; its weights are fetched from the object store
and SHA-256 verified by ``serving.store`` / ``serving.loader`` (the same path Triton's adapter
takes), then handed to ``quality.bench`` systems. Before evaluating, the case set is checked
against each model's training dataset version (manifest and shards read from the object store).
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpm_models.data.dataset.manifest import Manifest
from lpm_models.descriptor import DESCRIPTOR_NAME, ModelDescriptor
from quality.bench.cases import CaseSet, check_no_leakage
from quality.bench.leakage import LeakageReport, dataset_fingerprints
from quality.bench.record import ModelRef, TrackedRun, log_mlflow, record_catalog
from quality.bench.runner import BenchResult, run_bench
from quality.bench.systems import (BaseLPMSystem, GroundTruthSystem, OnlineLPMSystem, StillSystem, System, TritonSystem,
                                  VAEReconstructionSystem)
from serving.store import ObjectStore, default_cache_dir, fetch_verified

log = logging.getLogger(__name__)

DATA_BUCKET, DATASETS_PREFIX = "lpm-data", "datasets/"
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class ResolvedModel:
    """A registered version: its reference, descriptor and the version entity's fields we need."""

    ref: ModelRef
    descriptor: ModelDescriptor
    tags: dict[str, str]

    @property
    def dataset_version(self) -> str | None:
        return self.descriptor.lineage.get("dataset_version") or self.tags.get("lpm.dataset_version") or None


def bench_cache_dir() -> Path:
    """Where case sets (and the identity banks they come from) are cached: ``$LPM_BENCH_CACHE``, else
    ``$LPM_HOME/cache`` of the stack settings (the corpus asset caches identity banks there too)."""
    if os.environ.get("LPM_BENCH_CACHE"):
        return Path(os.environ["LPM_BENCH_CACHE"])
    from infra.local.settings import StackSettings

    return StackSettings.from_env().home / "cache"


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/name@alias`` -> (name, alias, None); ``models:/name/3`` -> (name, None, "3")."""
    found = _URI.match(uri.strip())
    if not found:
        raise ValueError(f"{uri!r} is not a registered model URI: use models:/NAME@ALIAS or models:/NAME/VERSION")
    return found["name"], found["alias"], found["version"]


def resolve_model_uri(tracking_uri: str, uri: str) -> ResolvedModel:
    """The version ``uri`` names and its descriptor (only the descriptor is downloaded)."""
    import mlflow
    from mlflow.tracking import MlflowClient

    name, alias, number = parse_model_uri(uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    version = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, number)
    with tempfile.TemporaryDirectory(prefix="lpm-descriptor-") as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=f"{version.source.rstrip('/')}/{DESCRIPTOR_NAME}",
                                                    dst_path=tmp, tracking_uri=tracking_uri)
        descriptor = ModelDescriptor.from_json(Path(local).read_text())
    ref = ModelRef(name, str(version.version), descriptor.kind, descriptor.preset, version.run_id, version.source)
    log.info("resolved %s -> %s (%s, preset %s)", uri, ref.ref, descriptor.kind, descriptor.preset)
    return ResolvedModel(ref, descriptor, dict(version.tags or {}))


def teacher_uri(model: ResolvedModel) -> str | None:
    """``models:/lpm-base/N`` of an Online LPM's teacher (its ``lpm.teacher`` tag), if recorded."""
    teacher = model.tags.get("lpm.teacher") or model.descriptor.lineage.get("teacher")
    if not teacher or "/" not in teacher:
        return None
    name, version = teacher.rsplit("/", 1)
    return f"models:/{name}/{version}"


def model_system(model: ResolvedModel, store: ObjectStore | None, cache_dir: Path | None = None,
                 base_steps: int | None = None, seed: int = 0,
                 base_guidance: tuple[float, float] | None = None) -> System:
    """An in-process system over the verified weights of ``model`` (kind base or online)."""
    cache = cache_dir or default_cache_dir()
    info = {"model": model.ref.ref, "preset": model.ref.preset or "", "dataset_version": model.dataset_version or ""}
    files = model.descriptor.files
    if model.ref.kind == "online":
        from serving.loader import engine_from_files

        return OnlineLPMSystem(engine_from_files(files, cache, store=store), label=model.ref.ref, seed=seed, info=info)
    if model.ref.kind == "base":
        paths = {name: fetch_verified(files[name], cache, store) for name in ("base", "vae")}
        guidance = {} if base_guidance is None else {"guidance": f"{base_guidance[0]:g},{base_guidance[1]:g}"}
        return BaseLPMSystem.from_files(paths["base"], paths["vae"], label=model.ref.ref, steps=base_steps, seed=seed,
                                        guidance=base_guidance, info=info | {"steps": base_steps or "preset"} | guidance)
    raise ValueError(f"{model.ref.ref} is a {model.ref.kind!r} model; LPM-Bench evaluates base and online models")


def dataset_leakage(cases: CaseSet, dataset_version: str, store: ObjectStore, shards: bool = True,
                    raise_on_overlap: bool = True) -> LeakageReport:
    """Check ``cases`` against a dataset version in the object store; raises LeakageError on overlap
    (unless ``raise_on_overlap`` is False: the report then names the overlapping cases)."""
    prefix = f"s3://{DATA_BUCKET}/{DATASETS_PREFIX}{dataset_version}/"
    with tempfile.TemporaryDirectory(prefix="lpm-bench-dataset-") as tmp:
        store.download(prefix + "manifest.json", Path(tmp) / "manifest.json")
        manifest = Manifest.load(Path(tmp))
        prints = None
        if shards:
            for shard in manifest.shards:
                store.download(prefix + shard.name, Path(tmp) / shard.name)
            prints = dataset_fingerprints(manifest, Path(tmp))
        return check_no_leakage(cases, manifest, fingerprints=prints, raise_on_overlap=raise_on_overlap)


def unique_names(systems: list[System], models: list[ResolvedModel | None]) -> None:
    """Rename systems of the same kind apart (``online``, ``online-v4``) so each gets its own run."""
    seen: set[str] = set()
    for system, model in zip(systems, models):
        if system.name in seen:
            system.name = f"{system.name}-v{model.ref.version}" if model else f"{system.name}-{len(seen)}"
        seen.add(system.name)


def drop_leaked_cases(cases: CaseSet, leakage: dict[str, Any]) -> CaseSet:
    """``cases`` without every case a leakage report (per dataset version, ``LeakageReport.to_dict``)
    found overlapping; raises when nothing is left."""
    leaked = sorted({cid for report in leakage.values() for cid in report.get("cases", [])})
    if not leaked:
        return cases
    kept = cases.without(leaked)
    if not kept.cases:
        raise ValueError(f"every one of the {len(cases.cases)} case(s) overlaps the training data: nothing to evaluate")
    log.warning("leakage: dropped %d of %d case(s) that overlap the training data: %s", len(leaked),
                len(cases.cases), ", ".join(leaked))
    return kept


@dataclass
class BenchRequest:
    """What to run: models (URIs), baselines, a Triton endpoint, the case set and where to record."""

    models: Sequence[str] = ()
    baselines: bool = True
    triton_url: str | None = None
    triton_model: str = "lpm-online"
    triton_version: str = ""
    base_steps: int | None = 2
    base_guidance: tuple[float, float] | None = None  # Base LPM (text, audio) guidance; None: the preset's
    seed: int = 0
    check_leakage: bool = True
    leakage_shards: bool = True
    drop_leaked: bool = False  # evaluate the cases that share nothing with training instead of refusing them all
    videos: int = 3
    tags: dict[str, str] = field(default_factory=dict)
    ablations: bool = False  # each Base LPM also as its audio-dropped ablation (``base-noaudio``) and its
    # VAE's reconstruction of ground truth (``vae-recon``, the ceiling of anything decoded by that VAE)


@dataclass
class BenchOutcome:
    result: BenchResult
    refs: dict[str, ModelRef]
    tracked: TrackedRun | None
    catalog_ids: dict[str, int]
    leakage: dict[str, Any]


def build_systems(request: BenchRequest, tracking_uri: str | None, store: ObjectStore | None,
                  cache_dir: Path | None = None) -> tuple[list[System], dict[str, ResolvedModel]]:
    """Baselines, then each model in order, then the Triton endpoint."""
    systems: list[System] = [GroundTruthSystem(), StillSystem()] if request.baselines else []
    resolved: list[ResolvedModel | None] = [None] * len(systems)
    for uri in request.models:
        if tracking_uri is None:
            raise ValueError("--model needs MLFLOW_TRACKING_URI (`eval \"$(lpm services env)\"`)")
        model = resolve_model_uri(tracking_uri, uri)
        system = model_system(model, store, cache_dir, request.base_steps, request.seed, request.base_guidance)
        systems.append(system)
        resolved.append(model)
        if request.ablations and isinstance(system, BaseLPMSystem):
            cfg = system.model.cfg
            systems += [system.audio_dropped(),
                        VAEReconstructionSystem(system.vae, (cfg.height, cfg.width), cfg.sampler.chunk_latents,
                                                info={"model": model.ref.ref})]
            resolved += [None, None]  # not the registered model's bench runs: promotion and compare never read them
    if request.triton_url:
        systems.append(TritonSystem(request.triton_url, request.triton_model, request.triton_version, request.seed))
        resolved.append(None)
    unique_names(systems, resolved)
    return systems, {s.name: m for s, m in zip(systems, resolved) if m is not None}


def run_request(request: BenchRequest, cases: CaseSet, work_dir: Path, *, tracking_uri: str | None,
                catalog_url: str | None, store: ObjectStore | None, cache_dir: Path | None = None,
                dagster_run_id: str | None = None, record: bool = True) -> BenchOutcome:
    """Check leakage, run every system, log to MLflow and the catalog (each when configured; ``record``
    False: models still resolve through ``tracking_uri`` but nothing is logged)."""
    systems, models = build_systems(request, tracking_uri, store, cache_dir)
    leakage: dict[str, Any] = {}
    if request.check_leakage:
        for version in sorted({m.dataset_version for m in models.values() if m.dataset_version}):
            if store is None:
                raise ValueError("the leakage check reads the training dataset: configure the object store")
            report = dataset_leakage(cases, version, store, request.leakage_shards,
                                     raise_on_overlap=not request.drop_leaked)
            leakage[version] = report.to_dict()
        cases = drop_leaked_cases(cases, leakage)
    result = run_bench(cases, systems, work_dir)
    refs = {name: m.ref for name, m in models.items()}
    tracked = None
    if tracking_uri is not None and record:
        tracked = log_mlflow(result, tracking_uri, models=refs, tags=request.tags, leakage=leakage or None,
                             videos=request.videos)
    ids = {} if not (catalog_url and record) else record_catalog(result, catalog_url, tracked, models=refs,
                                                    dagster_run_id=dagster_run_id)
    return BenchOutcome(result, refs, tracked, ids, leakage)
