"""The Pipes reporter, the training launcher and the training run configs (no services needed)."""

import math
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from orchestration.pipes_reporter import (
    REPORTER_SPEC, PipesReporter, TrainingEvents, _local_reporter, is_global_rank_zero, jsonable, make,
)
from orchestration.resources.launcher import TrainingLauncher, child_env, training_command

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("env", "zero"), [
    ({}, True), ({"LOCAL_RANK": "0"}, True), ({"LOCAL_RANK": "1"}, False),
    ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False), ({"RANK": "0", "LOCAL_RANK": "0"}, True),
    ({"RANK": "9", "LOCAL_RANK": "1", "NODE_RANK": "1"}, False), ({"RANK": "", "LOCAL_RANK": "0"}, True),
])
def test_only_global_rank_zero_reports(env: dict[str, str], zero: bool) -> None:
    assert is_global_rank_zero(env) is zero


def test_other_ranks_get_a_local_reporter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.delenv("RANK", raising=False)
    assert make() is _local_reporter


def test_jsonable_makes_plain_json() -> None:
    assert jsonable({"a": Path("/x"), "b": (1, 2.5), "c": math.nan, "d": {"e": True}}) == \
        {"a": "/x", "b": [1, 2.5], "c": None, "d": {"e": True}}


class RecordingPipes:
    """Records what a reporter writes to a Pipes context (the logic under test is the reporter's)."""

    def __init__(self) -> None:
        import logging

        self.messages: list[Any] = []
        self.materializations: list[dict[str, Any]] = []
        self.log = logging.getLogger("recording-pipes")

    def report_custom_message(self, payload: Any) -> None:
        self.messages.append(payload)

    def report_asset_materialization(self, metadata: dict[str, Any]) -> None:
        self.materializations.append(metadata)


def test_reporter_streams_events_and_materializes_once_on_done() -> None:
    pipes = RecordingPipes()
    reporter = PipesReporter(pipes)
    reporter("start", {"preset": "tiny", "max_steps": 4})
    reporter("progress", {"step": 2, "loss": 0.5, "phase": "listen", "eta_s": 3.0, "samples_per_s": 4.0})
    reporter("done", {"step": 4, "final_loss": 0.25, "path": Path("/out/base.pt"), "latent_std": [0.1]})
    reporter("done", {"step": 4})
    assert [m["event"] for m in pipes.messages] == ["start", "progress", "done", "done"]
    assert pipes.materializations == [{"step": 4, "final_loss": 0.25, "path": "/out/base.pt"}]
    events = TrainingEvents.from_messages(pipes.messages + ["not an event"])
    assert events.started == {"preset": "tiny", "max_steps": 4}
    assert {k: [(s, v) for s, v, _ in series] for k, series in events.metrics.items()} == \
        {"loss": [(2, 0.5)], "samples_per_s": [(2, 4.0)]}
    assert events.result["final_loss"] == 0.25 and events.last("loss") == 0.5 and events.last("psnr") is None


def test_command_and_environment() -> None:
    cmd = training_command("/usr/bin/python3", "lpm_models.base.train", ["--ranks", 2])
    assert cmd == ["/usr/bin/python3", "-m", "lpm_models.base.train", "--ranks", "2", "--reporter", REPORTER_SPEC]
    with pytest.raises(ValueError, match="reporter"):
        training_command("python", "m", ["--reporter", "logging"])
    env = child_env(threads=1, device="cpu", extra={"LPM_S3_SECRET_KEY": "s"})
    assert env["CUDA_VISIBLE_DEVICES"] == "" and env["OMP_NUM_THREADS"] == "1" and env["LPM_S3_SECRET_KEY"] == "s"
    assert "CUDA_VISIBLE_DEVICES" not in child_env(0, "auto")
    with pytest.raises(ValueError, match="device"):
        child_env(0, "tpu")


def _pipes_asset(fail: bool) -> dg.AssetsDefinition:
    @dg.asset(name="pipes_probe")
    def probe(context: dg.AssetExecutionContext, launcher: TrainingLauncher) -> dg.MaterializeResult:
        args = ["--steps", "4"] + (["--fail"] if fail else [])
        launched = launcher.launch(context, "tests.orchestration.pipes_child", args, threads=1, cwd=str(REPO))
        events = launched.events
        assert [e["event"] for e in events.events] == ["start", "progress", "progress", "progress", "progress",
                                                        "preview", "done"]
        assert [s for s, _, _ in events.metrics["loss"]] == [1, 2, 3, 4]
        assert events.previews == [Path("previews/step.png"), Path("previews/step.mp4")]
        return dg.MaterializeResult(metadata={**launched.metadata, "events": len(events.events)})

    return probe


def test_pipes_round_trip_through_a_real_child_process() -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([_pipes_asset(fail=False)], instance=instance, resources={"launcher": TrainingLauncher()})
    assert result.success
    meta = result.asset_materializations_for_node("pipes_probe")[0].metadata
    assert meta["final_loss"].value == pytest.approx(0.25) and meta["step"].value == 4 and meta["events"].value == 7
    logs = [e.message for e in instance.all_logs(result.run_id) if e.message]
    assert any("progress step=4" in m and "loss=0.25" in m for m in logs), "progress did not reach the Dagster logs"


def test_a_failing_child_fails_the_asset_with_its_error() -> None:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([_pipes_asset(fail=True)], instance=instance, resources={"launcher": TrainingLauncher()},
                            raise_on_error=False)
    assert not result.success
    text = "\n".join(str(e.dagster_event.event_specific_data) if e.dagster_event else e.message or ""
                     for e in instance.all_logs(result.run_id))
    assert "simulated training failure" in text


def test_train_models_job_and_budgets(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestration.assets.distillation import OnlineLPMConfig, distill_args
    from orchestration.assets.training import BaseLPMConfig, base_run_config, training_run_config
    from orchestration.definitions import defs

    for name in ("LPM_S3_ENDPOINT", "LPM_S3_ACCESS_KEY", "LPM_S3_SECRET_KEY", "MLFLOW_TRACKING_URI", "LPM_CATALOG_URL",
                 "LPM_TRITON_GRPC_URL", "LPM_TRITON_HTTP_URL", "LPM_TRITON_REPOSITORY"):
        monkeypatch.setenv(name, "unused-by-validation")
    job = defs.resolve_job_def("train_models")
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in job.asset_layer.selected_asset_keys} == {"video_vae", "base_lpm", "online_lpm"}
    assert all(graph.get(dg.AssetKey(k)).group_name == "training" for k in ("video_vae", "base_lpm", "online_lpm"))
    for budget in ("short", "medium", "long"):
        assert dg.validate_run_config(job, training_run_config(budget))
    with pytest.raises(ValueError, match="budget"):
        training_run_config("huge")
    cfg = base_run_config(BaseLPMConfig())
    assert cfg["strategy"] == {"kind": "fsdp2", "ranks": 2, "accelerator": "cpu", "activation_checkpointing": True}
    assert cfg["train"]["max_steps"] == 150
    # the budget's switch reaches the strategy the training CLI builds
    from lpm_models.base.train import RunConfig
    from lpm_models.base.checkpoint import dataclass_from_dict

    off = base_run_config(BaseLPMConfig(activation_checkpointing=False))
    assert dataclass_from_dict(RunConfig, off).strategy.activation_checkpointing is False
    args = distill_args(OnlineLPMConfig(steps_refiner=0, steps_dmd=0))
    assert args[args.index("--stages") + 1] == "ode,self_forcing" and "--no-refiner" in args
    with pytest.raises(ValueError, match="0 steps"):
        distill_args(OnlineLPMConfig(steps_ode=0, steps_dmd=0, steps_self_forcing=0, steps_refiner=0))
