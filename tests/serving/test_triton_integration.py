"""The served Online LPM end to end: real object store, real Triton (explicit model control).

Weights of a small untrained model are uploaded to the object store, a repository is built
with serving.repository, Triton loads it (the adapter downloads and verifies the weights)
and sessions stream over gRPC.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from lpm_models.descriptor import ModelDescriptor
from serving.client import StreamClient, StreamError
from serving.conversation import run_stream
from serving.loader import load_engine
from serving.params import ServingParams
from serving.repository import ServeSettings, build_model, read_provenance
from serving.store import ObjectStore
from tests.infra.stack import SessionStack
from tests.serving.factory import audio, images, write_model_files

pytestmark = [pytest.mark.integration, pytest.mark.timeout(900)]

MODEL = "lpm-online-it"
IDLE_S = 4.0


@dataclass
class Served:
    stack: SessionStack
    url: str
    files: dict[int, dict[str, Path]]
    descriptors: dict[int, ModelDescriptor]
    repository: Path


def upload(store: ObjectStore, files: dict[str, Path], run: str) -> ModelDescriptor:
    refs = {k: store.upload(p, f"s3://lpm-models/online/{run}/{p.name}").to_dict() for k, p in files.items()}
    return ModelDescriptor.from_dict({"format": "lpm-model/1", "kind": "online", "preset": "tiny", "files": refs,
                                      "lineage": {"dataset_version": "ds-it", "teacher": "lpm-base/1"}})


@pytest.fixture(scope="module")
def served(lpm_stack: SessionStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    import tritonclient.grpc as grpcclient

    stack = lpm_stack.require("objectstore", "triton")
    with stack.activated():
        store = ObjectStore.from_env()
        files = {v: write_model_files(tmp_path_factory.mktemp(f"v{v}"), seed=v) for v in (1, 2)}
        descriptors = {v: upload(store, files[v], f"run-v{v}") for v in (1, 2)}
    repository = stack.settings.triton_repository
    # the prompt encoder loads with the model: a first prompt that loads it lazily takes longer than
    # the short idle timeout used here, and Triton would drop that sequence
    # (frames_per_response=3: a chunk's 4 frames come back in two responses)
    settings = ServeSettings(ServingParams(idle_timeout_s=IDLE_S, eviction_interval_s=0.5, frames_per_response=3),
                             instances=1, max_sessions=4)
    build_model(repository, descriptors[1], registered_model="lpm-online", version=1, run_id="run-v1",
                triton_model=MODEL, settings=settings)
    client = grpcclient.InferenceServerClient(stack.settings.triton_grpc_url)
    client.load_model(MODEL)
    assert client.is_model_ready(MODEL, "1")
    yield Served(stack, stack.settings.triton_grpc_url, files, descriptors, repository)
    client.unload_model(MODEL)


def server_ready(url: str) -> bool:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    return bool(client.is_server_ready() and client.is_model_ready(MODEL))


def chunks(n: int, seed: int, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(audio(n, 10 * seed + j), audio(n, 1000 + 10 * seed + j)) for j in range(count)]


def stream_frames(url: str, image_seed: int, seed: int, count: int, version: str = "",
                  barrier: threading.Barrier | None = None) -> list[np.ndarray]:
    image, refs = images(image_seed)
    with StreamClient(url, MODEL, version) as client:
        info = client.open(image, refs, seed=seed)
        out = []
        for a_self, a_other in chunks(info["chunk_samples"], image_seed, count):
            if barrier is not None:
                barrier.wait(timeout=60)
            client.send(a_self, a_other)
            out.append(client.receive().video)
        client.finish()
    return out


def test_stream_end_to_end_matches_the_in_process_engine(served: Served) -> None:
    frames = stream_frames(served.url, image_seed=1, seed=7, count=3)
    torch.set_num_threads(1)
    engine = load_engine(served.files[1]["online"], served.files[1]["vae"])
    image, refs = images(1)
    session = engine.start(image, refs, seed=7)
    local = [engine.step(session, a, b) for a, b in chunks(engine.chunk_samples, 1, 3)]
    assert [f.shape for f in frames] == [f.shape for f in local]
    assert frames[0].shape[0] == engine.chunk_frames - engine.model.cfg.dit.temporal_factor + 1
    for remote, mine in zip(frames, local):
        assert np.abs(remote.astype(int) - mine.astype(int)).max() <= 2


def test_prompts_stream_info_and_a_paced_conversation(served: Served) -> None:
    image, refs = images(3)
    with StreamClient(served.url, MODEL) as client:
        info = client.open(image, refs, prompt="smiles warmly", seed=1)
        assert info["version"] == 1 and info["run_id"] == "run-v1" and info["registered_model"] == "lpm-online"
        assert info["seed"] == 1 and info["session"] == client.sequence_id and info["height"] == 32
        n = info["chunk_samples"]
        speech = audio(n * 5 - n // 3, 5, level=0.2)  # a short last chunk: padded by the server
        replies = []
        report = run_stream(client, speech, None, realtime=True, prompts={2: "laughs"}, on_reply=replies.append)
    assert report.errors == [] and report.chunks == 5 and report.ttff_s is not None and report.rtf is not None
    assert [r.chunk_index for r in replies] == list(range(5))
    assert [len(r.frames) for r in replies] == [1, 2, 2, 2, 2]  # frames_per_response=3
    assert [r.first_frame for r in replies] == [0] + [info["first_chunk_frames"] + info["chunk_frames"] * k
                                                      for k in range(4)]
    assert report.frames == info["first_chunk_frames"] + 4 * info["chunk_frames"]
    assert all(r.runtime_state in {"warmup", "idle", "listening", "responding"} for r in replies)


def test_malformed_requests_get_errors_and_the_server_stays_ready(served: Served) -> None:
    import tritonclient.grpc as grpcclient

    image, refs = images(4)

    def raw(name: str, array: np.ndarray, dtype: str) -> grpcclient.InferInput:
        tensor = grpcclient.InferInput(name, list(array.shape), dtype)
        tensor.set_data_from_numpy(array)
        return tensor

    with StreamClient(served.url, MODEL) as client:
        n = None
        starts = [([raw("CHARACTER_IMAGE", image[None].astype(np.float32), "FP32")], "data-type is 'FP32'"),
                  ([raw("CHARACTER_IMAGE", image[None, ..., 0], "UINT8")], "unexpected shape"),
                  ([], "must carry CHARACTER_IMAGE"),
                  ([raw("CHARACTER_IMAGE", image[None], "UINT8"), raw("REFERENCES", np.stack(refs * 3)[None], "UINT8")],
                   "references exceed")]
        for inputs, match in starts:
            client.send_raw(inputs, start=True)
            reply = client.next_reply()
            assert reply.error and match in reply.error, reply.error
            assert server_ready(served.url)
        n = client.open(image, refs, seed=2)["chunk_samples"]
        steps = [((np.zeros(n + 1, np.float32),) * 2, "more than one chunk"),
                 ((np.zeros(0, np.float32),) * 2, "empty"),
                 ((np.zeros(n, np.float32), np.zeros(n // 2, np.float32)), "same time span"),
                 ((np.full(n, np.nan, np.float32),) * 2, "NaN")]
        for (a_self, a_other), match in steps:
            client.send(a_self, a_other)
            with pytest.raises(StreamError, match=match):
                client.receive()
        client.send_raw([])
        assert "carries no audio" in (client.next_reply().error or "")
        with pytest.raises(StreamError, match="duplicate_start"):
            client.open(image, refs)
        client.send(np.zeros(n, np.float32), np.zeros(n, np.float32))
        assert client.receive().chunk_index == 0  # the session survived every refusal
        client.finish()
    with StreamClient(served.url, MODEL) as stranger:  # a chunk on a sequence that never started
        stranger.send(np.zeros(8, np.float32), np.zeros(8, np.float32))
        assert "START" in (stranger.next_reply().error or "")
    assert server_ready(served.url)
    assert stream_frames(served.url, 1, 7, 1)[0].shape[1:] == (32, 32, 3)


def test_two_concurrent_sessions_are_isolated(served: Served) -> None:
    solo = {k: stream_frames(served.url, image_seed=k, seed=10 + k, count=3) for k in (5, 6)}
    barrier = threading.Barrier(2)
    results: dict[int, list[np.ndarray]] = {}

    def run(k: int) -> None:
        results[k] = stream_frames(served.url, image_seed=k, seed=10 + k, count=3, barrier=barrier)

    threads = [threading.Thread(target=run, args=(k,)) for k in (5, 6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    for k in (5, 6):
        assert len(results[k]) == 3 and all(np.array_equal(a, b) for a, b in zip(results[k], solo[k]))
    assert not np.array_equal(solo[5][1], solo[6][1])


def test_idle_sessions_are_evicted(served: Served) -> None:
    image, refs = images(7)
    log_path = served.stack.settings.log_dir / "triton.log"
    with StreamClient(served.url, MODEL) as client:
        n = client.open(image, refs)["chunk_samples"]
        client.send(np.zeros(n, np.float32), np.zeros(n, np.float32))
        client.receive()
        time.sleep(IDLE_S + 2.0)
        assert f"session {client.sequence_id} evicted after" in log_path.read_text()
        client.send(np.zeros(n, np.float32), np.zeros(n, np.float32))
        reply = client.next_reply()
    assert reply.error and ("START" in reply.error or "evicted" in reply.error), reply.error
    assert server_ready(served.url)


def test_a_checksum_mismatch_refuses_to_load(served: Served) -> None:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    good = served.descriptors[1].to_dict()
    good["files"]["vae"]["sha256"] = "0" * 64
    build_model(served.repository, ModelDescriptor.from_dict(good), registered_model="lpm-online-bad", version=1,
                run_id="run-bad", settings=ServeSettings(ServingParams(warmup=False, preload_text_encoder=False)))
    client = grpcclient.InferenceServerClient(served.url)
    with pytest.raises(InferenceServerException, match="refusing to load"):
        client.load_model("lpm-online-bad")
    assert not client.is_model_ready("lpm-online-bad") and server_ready(served.url)


def test_two_versions_are_served_side_by_side(served: Served) -> None:
    import tritonclient.grpc as grpcclient

    built = build_model(served.repository, served.descriptors[2], registered_model="lpm-online", version=2,
                        run_id="run-v2", triton_model=MODEL)
    assert built.versions == (1, 2)
    client = grpcclient.InferenceServerClient(served.url)
    client.load_model(MODEL)
    assert client.is_model_ready(MODEL, "1") and client.is_model_ready(MODEL, "2")
    image, refs = images(8)
    infos, first = {}, {}
    for version in ("1", "2"):
        with StreamClient(served.url, MODEL, version) as stream:
            infos[version] = stream.open(image, refs, seed=3)
            n = infos[version]["chunk_samples"]
            stream.send(audio(n, 1), audio(n, 2))
            first[version] = stream.receive().video
            stream.finish()
    assert infos["1"]["run_id"] == "run-v1" and infos["2"]["run_id"] == "run-v2"
    assert not np.array_equal(first["1"], first["2"])
    provenance = read_provenance(built.provenance_path)
    assert provenance["model_version"] == 2 and provenance["checksums"] == {
        k: ref.sha256 for k, ref in served.descriptors[2].files.items()}


def test_files_stream_to_an_mp4_with_the_speech(served: Served, tmp_path: Path) -> None:
    import av
    from PIL import Image

    from serving.media import write_wav
    from serving.probe import speech_like
    from serving.stream import StreamJob, stream_to_mp4

    image, refs = images(9)
    Image.fromarray(image).save(tmp_path / "face.png")
    Image.fromarray(refs[0][:20]).save(tmp_path / "ref.png")  # another size: fitted to the image
    write_wav(tmp_path / "speech.wav", speech_like(1.5, 22050, 1), 22050)
    write_wav(tmp_path / "user.wav", speech_like(0.7, 8000, 2), 8000)
    job = StreamJob(url=served.url, model=MODEL, image=tmp_path / "face.png", references=(tmp_path / "ref.png",),
                    speech=tmp_path / "speech.wav", user_speech=tmp_path / "user.wav", out=tmp_path / "out.mp4",
                    prompt="nods", seed=4)
    result = stream_to_mp4(job)
    assert result.report.errors == [] and result.info["seed"] == 4
    assert result.frames_written == result.report.frames > 0
    with av.open(str(result.out)) as container:
        assert container.streams.video[0].frames == result.frames_written
        assert abs(float(container.streams.audio[0].duration * container.streams.audio[0].time_base) - 1.5) < 0.1


def test_the_serving_bench_measures_overhead_against_the_in_process_engine(served: Served) -> None:
    """`lpm serve bench`'s overhead figure: alternating rounds, pooled p50s, split by Triton's metrics."""
    from serving.bench import Targets, failures, measure_overhead

    torch.set_num_threads(1)
    engine = load_engine(served.files[1]["online"], served.files[1]["vae"])
    figures = measure_overhead(served.url, MODEL, "1", engine, seconds=6 * engine.chunk_seconds, rounds=2,
                               metrics_url=served.stack.settings.triton_metrics_url)
    assert figures["rounds"] == 2 and len(figures["triton_overhead_ratio_per_round"]) == 2
    assert figures["errors"] == 0, figures["error_messages"]
    local, remote = figures["in_process_chunk_p50_s"], figures["triton_chunk_p50_warm_s"]
    assert local > 0 and remote > 0
    assert figures["triton_overhead_ratio"] == pytest.approx(figures["triton_overhead_s"] / local)
    # the metrics split covers the warm chunks only (START, the first chunk and END are outside its window):
    # the time Triton counts inside the model instance is part of what the client waited for each chunk,
    # so transport = client mean - instance mean is not negative (1 ms of clock slack)
    compute, transport = figures["triton_compute_mean_s"], figures["triton_transport_s"]
    assert 0 < compute and transport > -0.001
    assert figures["triton_instance_extra_s"] is not None
    assert figures["single_ttff_s"] > 0 and figures["single_rtf"] > 0
    # the overhead goal is judged on the ratio: an impossible target fails on it and only on it
    checked = {**figures, "streams": 0, "concurrent_rtf": [], "concurrent_ttff_p95_s": 0.0}
    missed = failures(checked, Targets(rtf=100.0, ttff_p95_s=100.0, overhead_ratio=-1.0))
    assert len(missed) == 1 and "overhead" in missed[0]
