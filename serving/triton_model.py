"""Triton Python-backend adapter for the Online LPM (copied as ``<repo>/<model>/<N>/model.py``).

Thin on purpose: parse ``config.pbtxt`` parameters (``serving.params``), fetch and verify
the version's weights (``serving.loader``), turn request tensors into calls on the session
table (``serving.engine``) and its results into decoupled responses. The tensor contract
is documented in ``serving.contract``. Every failure of a request is answered with a
TritonError response; the server and the other sessions carry on. ``finalize`` drains.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import triton_python_backend_utils as pb_utils

from serving import contract as C
from serving.engine import ChunkResult, ServingError, StreamingService
from serving.loader import engine_from_files, warm_up
from serving.params import REGISTERED_MODEL, ServingParams, VersionFiles, config_parameters
from serving.store import default_cache_dir

log = logging.getLogger("serving.triton_model")
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
STATS_EVERY_S = 60.0


@dataclass(frozen=True)
class Request:
    """One Triton request, decoded and checked for the contract's shapes."""

    session: int | str
    start: bool
    end: bool
    image: np.ndarray | None
    references: list[np.ndarray]
    prompt: str | None
    seed: int | None
    self_audio: np.ndarray | None
    other_audio: np.ndarray | None


def _input(request: Any, name: str) -> np.ndarray | None:
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        return None
    array = tensor.as_numpy()
    if array.ndim < 1 or array.shape[0] != 1:
        raise ServingError("invalid_argument", f"{name} must have a leading batch dimension of 1, got {array.shape}")
    return array[0]


def _flag(request: Any, name: str) -> bool:
    value = _input(request, name)
    return bool(value is not None and value.size and value.reshape(-1)[0])


def _text(value: np.ndarray | None, name: str) -> str | None:
    if value is None:
        return None
    item = value.reshape(-1)[0] if value.size == 1 else None
    if item is None:
        raise ServingError("invalid_argument", f"{name} must hold exactly one string, got shape {value.shape}")
    try:
        return item.decode("utf-8") if isinstance(item, bytes) else str(item)
    except UnicodeDecodeError as err:
        raise ServingError("invalid_argument", f"{name} is not valid UTF-8: {err}") from err


def parse_request(request: Any) -> Request:
    """Decode a request's tensors (dtype and shape checks for the values the engine does not see)."""
    seed = _input(request, C.SEED)
    if seed is not None and seed.size != 1:
        raise ServingError("invalid_argument", f"SEED must hold one integer, got shape {seed.shape}")
    refs = _input(request, C.REFERENCES)
    if refs is not None and (refs.ndim != 4 or refs.shape[-1] != 3):
        raise ServingError("invalid_argument", f"REFERENCES must be (R, H, W, 3) uint8, got {refs.shape}")
    return Request(
        session=request.correlation_id(), start=_flag(request, C.START), end=_flag(request, C.END),
        image=_input(request, C.CHARACTER_IMAGE), references=list(refs) if refs is not None else [],
        prompt=_text(_input(request, C.PROMPT), C.PROMPT), seed=None if seed is None else int(seed.reshape(-1)[0]),
        self_audio=_input(request, C.SELF_AUDIO), other_audio=_input(request, C.OTHER_AUDIO),
    )


def _tensor(name: str, value: Any) -> Any:
    spec = C.SPECS[name]
    if spec.triton_type == "STRING":
        return pb_utils.Tensor(name, np.array([[value.encode("utf-8")]], dtype=np.object_))
    dtype = {"UINT8": np.uint8, "INT64": np.int64}[spec.triton_type]
    return pb_utils.Tensor(name, np.ascontiguousarray(np.asarray(value, dtype=dtype)[None]))


class TritonPythonModel:
    """One model instance: a StreamingService over one Online LPM version."""

    def initialize(self, args: dict[str, str]) -> None:
        if not logging.getLogger().handlers:
            logging.basicConfig(stream=sys.stderr, level=logging.INFO,
                                format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        config = json.loads(args["model_config"])
        parameters = config_parameters(config)
        self.params = ServingParams.from_parameters(parameters)
        self.version = int(args["model_version"])
        self.files = VersionFiles.from_parameters(parameters, self.version)
        torch.set_num_threads(self.params.threads)
        cache = Path(self.params.cache_dir) if self.params.cache_dir else default_cache_dir()
        engine = engine_from_files(self.files.files, cache, self.params.device)
        if self.params.warmup or self.params.preload_text_encoder:
            seconds = warm_up(engine, with_prompt=self.params.preload_text_encoder)
            log.info("%s: warm-up %.1f s", args["model_instance_name"], seconds)
        self.service = StreamingService(engine, idle_timeout_s=self.params.idle_timeout_s,
                                        max_sessions=max(1, int(config.get("max_batch_size", 1))))
        cfg = engine.model.cfg
        self.info = {"chunk_samples": self.service.chunk_samples, "sample_rate": self.service.sample_rate,
                     "fps": self.service.fps, "chunk_frames": self.service.chunk_frames,
                     "first_chunk_frames": self.service.first_chunk_frames, "height": cfg.height, "width": cfg.width,
                     "max_references": self.service.max_references, "model": args["model_name"],
                     "version": self.version, "registered_model": parameters.get(REGISTERED_MODEL, ""),
                     "run_id": self.files.run_id, "instance": args["model_instance_name"]}
        self._stop = threading.Event()
        self._evictor = threading.Thread(target=self._evict_loop, name="lpm-evictor", daemon=True)
        self._evictor.start()
        log.info("%s ready: %s", args["model_instance_name"], self.info)

    def _evict_loop(self) -> None:
        last_report, last_chunks = time.monotonic(), 0
        while not self._stop.wait(self.params.eviction_interval_s):
            try:
                self.service.evict_idle()
                stats = self.service.stats()
                if time.monotonic() - last_report >= STATS_EVERY_S and stats["chunks"] != last_chunks:
                    log.info("%s stats: %s", self.info["instance"], stats)
                    last_report, last_chunks = time.monotonic(), stats["chunks"]
            except Exception:  # keep evicting; a failure here must not kill the instance
                log.exception("idle eviction failed")

    def execute(self, requests: list[Any]) -> None:
        for request in requests:
            self._handle(request)
        return None

    def _handle(self, request: Any) -> None:
        sender = request.get_response_sender()
        if not _flag(request, C.READY):  # a null request filling an empty sequence slot
            sender.send(flags=FINAL)
            return
        parsed: Request | None = None
        try:
            parsed = parse_request(request)
            self._serve(parsed, sender)
            sender.send(flags=FINAL)
        except ServingError as err:
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{err.code}: {err}")), flags=FINAL)
        except Exception as err:  # answered as an error: the server stays up for the other sessions
            log.exception("request of session %r failed", getattr(parsed, "session", "?"))
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(f"internal: {type(err).__name__}: {err}")),
                        flags=FINAL)
        finally:
            if parsed is not None and parsed.end:
                self._end(parsed.session)

    def _end(self, session: int | str) -> None:
        """END frees the session even when its last request failed (Triton forgets the sequence)."""
        try:
            if session in self.service:
                self.service.end(session)
        except ServingError as err:
            log.warning("could not end session %r: %s", session, err)

    def _serve(self, req: Request, sender: Any) -> None:
        has_audio = req.self_audio is not None or req.other_audio is not None
        if req.start:
            if req.image is None:
                raise ServingError("invalid_argument", "a START request must carry CHARACTER_IMAGE (H, W, 3) uint8")
            seed = self.service.start(req.session, req.image, req.references, prompt=req.prompt, seed=req.seed)
            info = json.dumps({**self.info, "session": req.session, "seed": seed})
            sender.send(pb_utils.InferenceResponse(output_tensors=[_tensor(C.STREAM_INFO, info)]))
        elif req.image is not None or req.references or req.seed is not None:
            raise ServingError("invalid_argument", "CHARACTER_IMAGE, REFERENCES and SEED belong to the START request")
        if has_audio:
            if req.self_audio is None or req.other_audio is None:
                raise ServingError("invalid_argument", "send SELF_AUDIO and OTHER_AUDIO together (zeros for silence)")
            result = self.service.step(req.session, req.self_audio, req.other_audio,
                                       prompt=None if req.start else req.prompt)
            self._send_frames(result, sender)
        elif not req.start and not req.end:
            raise ServingError("invalid_argument", "this request carries no audio: send SELF_AUDIO and OTHER_AUDIO "
                                                   f"({self.service.chunk_samples} float32 samples each)")

    def _send_frames(self, result: ChunkResult, sender: Any) -> None:
        step = self.params.frames_per_response or result.frames.shape[0]
        for lo in range(0, result.frames.shape[0], step):
            sender.send(pb_utils.InferenceResponse(output_tensors=[
                _tensor(C.FRAMES, result.frames[lo:lo + step]),
                _tensor(C.CHUNK_INDEX, [result.chunk_index]),
                _tensor(C.FIRST_FRAME, [result.first_frame + lo]),
                _tensor(C.RUNTIME_STATE, result.runtime_state),
            ]))

    def finalize(self) -> None:
        self._stop.set()
        self._evictor.join(timeout=5.0)
        closed = self.service.drain()
        log.info("finalize: drained %d sessions, stats %s", len(closed), self.service.stats())
