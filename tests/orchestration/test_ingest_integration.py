"""The corpus asset and raw ingestion against the real object store, MLflow and catalog."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
import pytest

from infra.catalog import Catalog
from orchestration.assets.corpus import synthetic_corpus
from orchestration.assets.ingest import RAW_BUCKET, RAW_PREFIX, raw_video_partitions, raw_video_sensor, raw_videos
from orchestration.resources import default_resources, object_store_from_env
from tests.media_factory import make_bad_files

pytestmark = pytest.mark.integration

CORPUS = {"seed": 3, "conversations": 2, "duration_s": 5.0, "size": 128, "identities": 4, "workers": 1}


@pytest.fixture(scope="module")
def ingested(lpm_stack, tmp_path_factory: pytest.TempPathFactory):
    """Materialize a tiny corpus, upload one bad file per reason, let the sensor partition, ingest all."""
    lpm_stack.require("objectstore", "mlflow")
    with lpm_stack.activated():
        instance = dg.DagsterInstance.ephemeral()
        resources = default_resources()
        result = dg.materialize([synthetic_corpus], instance=instance, resources=resources,
                                run_config={"ops": {"synthetic_corpus": {"config": CORPUS}}})
        assert result.success
        store = object_store_from_env()
        bad = make_bad_files(tmp_path_factory.mktemp("bad"))
        for reason, path in bad.items():
            store.put_file(RAW_BUCKET, f"{RAW_PREFIX}bad_{reason}{path.suffix}", path)
        ctx = dg.build_sensor_context(instance=instance, resources={"object_store": store})
        sensor_result = raw_video_sensor(ctx)
        keys = sorted(r.partition_key for r in sensor_result.run_requests)
        instance.add_dynamic_partitions(raw_video_partitions.name, keys)
        for key in keys:
            assert dg.materialize([raw_videos], instance=instance, resources=resources, partition_key=key).success
        yield {"instance": instance, "keys": keys, "bad": bad, "store": store, "resources": resources,
               "catalog": Catalog(os.environ["LPM_CATALOG_URL"]), "corpus": result, "env": dict(os.environ)}


def test_corpus_keeps_clear_of_the_benchmarks_held_out_people(ingested) -> None:
    from lpm_models.data.synth.identities import AVOID_DISTANCE

    materialized = ingested["corpus"].asset_materializations_for_node("synthetic_corpus")[0]
    distances = materialized.metadata["identity_distances"].value
    assert distances["held_out_min"] >= AVOID_DISTANCE


def test_sensor_requests_every_new_object(ingested) -> None:
    keys = ingested["keys"]
    assert len([k for k in keys if not k.startswith("bad_")]) == CORPUS["conversations"]
    assert {k for k in keys if k.startswith("bad_")} == {f"bad_{r}{p.suffix}" for r, p in ingested["bad"].items()}
    ctx = dg.build_sensor_context(instance=ingested["instance"], resources={"object_store": ingested["store"]})
    assert isinstance(raw_video_sensor(ctx), dg.SkipReason)  # nothing new the second time


def test_good_videos_ingested_bad_ones_rejected_with_reason(ingested) -> None:
    catalog = ingested["catalog"]
    good = catalog.source_videos(status="ingested")
    assert len(good) == CORPUS["conversations"]
    for row in good:
        assert row.fps == pytest.approx(25.0)
        assert row.audio_rate == 16000 and row.duration_s > 3.0 and len(row.sha256) == 64
    rejected = {r.subject_key.rsplit("/", 1)[-1]: r.reason for r in catalog.rejections(stage="ingest")}
    for reason, path in ingested["bad"].items():
        assert rejected[f"bad_{reason}{path.suffix}"] == reason


def test_reingest_is_idempotent(ingested) -> None:
    catalog = ingested["catalog"]
    before = catalog.counts()
    key = next(k for k in ingested["keys"] if not k.startswith("bad_"))
    with pytest.MonkeyPatch.context() as mp:
        for name, value in ingested["env"].items():
            mp.setenv(name, value)
        assert dg.materialize([raw_videos], instance=ingested["instance"], resources=ingested["resources"],
                              partition_key=key).success
    assert catalog.counts() == before


def test_corpus_mlflow_run_has_params_and_preview_in_object_store(ingested) -> None:
    from mlflow.tracking import MlflowClient

    env = ingested["env"]
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name("lpm").experiment_id],
                              filter_string="tags.`lpm.stage` = 'corpus'")
    assert runs, "corpus run missing"
    run = runs[0]
    assert run.data.params["conversations"] == str(CORPUS["conversations"])
    assert run.data.tags["dagster.run_id"] == ingested["corpus"].run_id
    previews = [a.path for a in client.list_artifacts(run.info.run_id, "preview")]
    assert any(p.endswith(".mp4") for p in previews) and any(p.endswith(".png") for p in previews)
    stored = ingested["store"].list("lpm-mlflow")
    assert any(k.endswith(".mp4") for k in stored), "preview artifact not in the object store"
    # ground truth is kept apart from the raw videos
    assert not any(k.endswith(".json") for k in ingested["store"].list(RAW_BUCKET))
    assert any(Path(k).suffix == ".json" for k in ingested["store"].list("lpm-data", "corpus-truth/"))
