"""Logic of the deployment helpers without a server: Prometheus parsing, versions kept, smoke checks."""

from __future__ import annotations

import numpy as np

from serving.client import ChunkReply
from serving.deploy import Health, versions_to_keep
from serving.metrics import metrics_url, model_values, parse, server_values
from serving.smoke import SmokeLimits, _Checker, _check_info, _check_states

METRICS = """# HELP nv_inference_request_success Number of successful inference requests
# TYPE nv_inference_request_success counter
nv_inference_request_success{model="lpm-online",version="2"} 10
nv_inference_request_success{model="lpm-online",version="3"} 4
nv_inference_request_failure{model="lpm-online",reason="BACKEND",version="3"} 1
nv_inference_request_failure{model="lpm-online",reason="OTHER",version="3"} 2
nv_inference_request_success{model="other",version="3"} 99
nv_inference_request_summary_us{model="lpm-online",version="3",quantile="0.5"} 123
nv_cpu_utilization 0.5
garbage line
"""


def test_prometheus_text_is_parsed_per_model_and_version() -> None:
    samples = parse(METRICS)
    assert len(samples) == 7
    assert model_values(samples, "lpm-online", "3") == {"nv_inference_request_success": 4.0,
                                                         "nv_inference_request_failure": 3.0}
    assert model_values(samples, "lpm-online")["nv_inference_request_success"] == 14.0
    assert server_values(samples) == {"nv_cpu_utilization": 0.5}
    assert metrics_url("127.0.0.1:8002") == "http://127.0.0.1:8002/metrics"
    assert metrics_url("http://h:1/metrics") == "http://h:1/metrics"


def test_two_newest_versions_and_the_pinned_champion_are_kept() -> None:
    assert versions_to_keep([1, 2, 3, 4]) == {3, 4}
    assert versions_to_keep([1, 2, 3, 4], pinned=[1]) == {1, 3, 4}
    assert versions_to_keep([4, 3], pinned=[7]) == {3, 4}         # a pinned version not in the folder: nothing to keep
    assert versions_to_keep([1, 2, 3], newest=0, pinned=[2]) == {2}


def test_health_names_a_dead_stub() -> None:
    health = Health(first_errors=["v3: START refused: Stub process 'lpm-online_0_1' is not healthy."], recovered=True)
    assert health.dead_stub and health.live and health.to_dict()["recovered"]
    assert not Health(first_errors=["v3: timeout"], errors=["v3: timeout"]).live


INFO = {"chunk_samples": 3840, "sample_rate": 16000, "fps": 25, "chunk_frames": 6, "first_chunk_frames": 5,
        "height": 8, "width": 8, "model": "m", "version": 3, "session": 1, "seed": 1}


def reply(k: int, frames: np.ndarray, first: int, state: str = "responding") -> ChunkReply:
    return ChunkReply(index=k + 1, kind="chunk", sent_at=0.0, frames=[frames], chunk_index=k, first_frame=first,
                      runtime_state=state)


def frames(n: int, seed: int, h: int = 8) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, 8, 3), dtype=np.uint8)


def test_smoke_checker_accepts_a_good_stream_and_names_each_fault() -> None:
    checker = _Checker(INFO, SmokeLimits())
    checker.check(reply(0, frames(5, 0), 0, "warmup"))
    checker.check(reply(1, frames(6, 1), 5))
    assert checker.failures == [] and checker.states == {"warmup": 1, "responding": 1}
    bad = _Checker(INFO, SmokeLimits())
    bad.check(reply(0, frames(6, 0), 0, "warmup"))                          # wrong frame count
    bad.check(reply(2, frames(6, 1, h=4), 7, "dancing"))                    # index, first frame, shape, state
    bad.check(reply(2, np.zeros((6, 8, 8, 3), np.uint8), 12))               # black flat frames
    text = " ".join(bad.failures)
    for fault in ("expected uint8 (5, 8, 8, 3)", "CHUNK_INDEX 2", "FIRST_FRAME 7", "'dancing'", "flat frame",
                  "pixel mean 0.0"):
        assert fault in text, fault
    assert _check_info(INFO, "m", "3") == []
    assert "expected m v4" in _check_info(INFO, "m", "4")[0]
    assert "lacks" in _check_info({"model": "m"}, "m", "")[0]
    assert _check_states(["warmup", "listening"], 1) == []
    assert "began in 'idle'" in _check_states(["idle"], 1)[0]
    assert "never left" in _check_states(["warmup"] * 5, 1)[0]
