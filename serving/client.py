"""Client SDK for a served Online LPM: one session over one gRPC bidirectional stream.

    with StreamClient("127.0.0.1:8001", "lpm-online") as client:
        info = client.open(character_image, references, prompt="smiles", seed=1)
        client.send(self_chunk, other_chunk)            # non-blocking; any number in flight
        reply = client.receive()                        # ChunkReply: frames (F, H, W, 3) uint8
        client.finish()                                 # END: the server frees the session

``run_stream`` drives a whole conversation (pacing chunks in real time or as fast as the
server answers) and returns latency statistics. Tensor names: ``serving.contract``.
Replies arrive in request order. Errors raised by Triton itself name their request
("[request id: N] ..."); errors from the model belong to the oldest request still waiting.
"""

from __future__ import annotations

import json
import logging
import queue
import random
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient

from serving import contract as C

log = logging.getLogger(__name__)


_REQUEST_ID = re.compile(r"^\[request id: ([^\]]*)\]")


class StreamError(RuntimeError):
    """The server refused or failed a request of this session."""


@dataclass
class ChunkReply:
    """The outcome of one request: frames (or stream info, or an error) and its timing."""

    index: int
    kind: str  # "start" | "chunk" | "end"
    sent_at: float
    frames: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] | None = None
    chunk_index: int | None = None
    first_frame: int | None = None
    runtime_state: str | None = None
    first_response_at: float | None = None
    done_at: float | None = None
    error: str | None = None

    @property
    def video(self) -> np.ndarray:
        """All frames of the reply, (F, H, W, 3) uint8."""
        return np.concatenate(self.frames) if self.frames else np.zeros((0, 0, 0, 3), np.uint8)

    @property
    def latency_s(self) -> float:
        return (self.done_at or self.sent_at) - self.sent_at


def _input(name: str, array: np.ndarray) -> grpcclient.InferInput:
    spec = C.SPECS[name]
    data = np.asarray(array)[None]
    tensor = grpcclient.InferInput(name, list(data.shape), spec.client_type)
    tensor.set_data_from_numpy(data)
    return tensor


def _text(value: str) -> np.ndarray:
    return np.array([value.encode("utf-8")], dtype=np.object_)


def new_sequence_id() -> int:
    """A random non-zero 63-bit correlation id."""
    return random.SystemRandom().randrange(1, 2**63)


class StreamClient:
    """One Online LPM session on its own gRPC stream (thread-safe send / receive)."""

    def __init__(self, url: str, model: str, version: str = "", sequence_id: int | None = None,
                 timeout_s: float = 120.0) -> None:
        self.model, self.version, self.timeout_s = model, version, timeout_s
        self.sequence_id = sequence_id or new_sequence_id()
        self.info: dict[str, Any] | None = None
        self.open_s: float | None = None
        self._client = grpcclient.InferenceServerClient(url)
        self._lock = threading.Lock()
        self._pending: deque[ChunkReply] = deque()
        self._done: queue.Queue[ChunkReply] = queue.Queue()
        self._count = 0
        self._stream_error: str | None = None
        self._client.start_stream(callback=self._on_response)

    # ------------------------------------------------------------------ responses
    def _on_response(self, result: grpcclient.InferResult | None, error: Exception | None) -> None:
        now = time.perf_counter()
        with self._lock:
            if not self._pending:
                self._stream_error = str(error) if error else "a response arrived for no request"
                log.error("stream %d: %s", self.sequence_id, self._stream_error)
                return
            if error is not None:
                reply = self._owner(str(error))
                reply.error, reply.done_at = str(error), now
                self._pending.remove(reply)
                self._done.put(reply)
                return
            reply = self._pending[0]
            response = result.get_response()
            names = {o.name for o in response.outputs}
            if C.STREAM_INFO in names:
                reply.info = json.loads(result.as_numpy(C.STREAM_INFO).reshape(-1)[0])
            if C.FRAMES in names:
                reply.frames.append(result.as_numpy(C.FRAMES)[0])
                reply.first_response_at = reply.first_response_at or now
                if reply.chunk_index is None:
                    reply.chunk_index = int(result.as_numpy(C.CHUNK_INDEX).reshape(-1)[0])
                    reply.first_frame = int(result.as_numpy(C.FIRST_FRAME).reshape(-1)[0])
                reply.runtime_state = result.as_numpy(C.RUNTIME_STATE).reshape(-1)[0].decode()
            final = response.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                reply.done_at = now
                self._done.put(self._pending.popleft())

    def _owner(self, message: str) -> ChunkReply:
        """The pending request an error belongs to (by Triton's "[request id: N]" prefix, else the oldest)."""
        found = _REQUEST_ID.match(message)
        if found:
            for reply in self._pending:
                if str(reply.index) == found.group(1):
                    return reply
        return self._pending[0]

    def _submit(self, kind: str, inputs: list[grpcclient.InferInput], start: bool = False, end: bool = False) -> int:
        with self._lock:
            if self._stream_error:
                raise StreamError(f"the stream failed: {self._stream_error}")
            reply = ChunkReply(index=self._count, kind=kind, sent_at=time.perf_counter())
            self._pending.append(reply)
            self._count += 1
            self._client.async_stream_infer(self.model, inputs, model_version=self.version,
                                            request_id=str(reply.index), sequence_id=self.sequence_id,
                                            sequence_start=start, sequence_end=end, enable_empty_final_response=True)
            return reply.index

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._pending)

    def next_reply(self, timeout_s: float | None = None) -> ChunkReply:
        """The next finished request (errors included, not raised)."""
        try:
            return self._done.get(timeout=self.timeout_s if timeout_s is None else timeout_s)
        except queue.Empty as err:
            raise TimeoutError(f"no reply from {self.model} within {timeout_s or self.timeout_s} s "
                               f"({self.in_flight} requests waiting); stream error: {self._stream_error}") from err

    def poll(self) -> ChunkReply | None:
        """A finished request if one is ready, else None."""
        try:
            return self._done.get_nowait()
        except queue.Empty:
            return None

    # ------------------------------------------------------------------ requests
    def open(self, character_image: np.ndarray, references: list[np.ndarray] | np.ndarray | None = None,
             prompt: str | None = None, seed: int | None = None) -> dict[str, Any]:
        """START the session; returns the stream info (chunk_samples, sample_rate, fps, seed, ...)."""
        inputs = [_input(C.CHARACTER_IMAGE, character_image)]
        if references is not None and len(references):
            inputs.append(_input(C.REFERENCES, np.stack(list(references))))
        if prompt is not None:
            inputs.append(_input(C.PROMPT, _text(prompt)))
        if seed is not None:
            inputs.append(_input(C.SEED, np.array([seed], np.int64)))
        self._submit("start", inputs, start=True)
        reply = self.next_reply()
        if reply.error:
            raise StreamError(f"START refused: {reply.error}")
        self.info, self.open_s = reply.info, reply.latency_s
        return dict(reply.info or {})

    def send(self, self_audio: np.ndarray, other_audio: np.ndarray, prompt: str | None = None,
             end: bool = False) -> int:
        """Queue one audio chunk per channel (float32, <= chunk_samples); returns the request index."""
        inputs = [_input(C.SELF_AUDIO, np.asarray(self_audio, np.float32)),
                  _input(C.OTHER_AUDIO, np.asarray(other_audio, np.float32))]
        if prompt is not None:
            inputs.append(_input(C.PROMPT, _text(prompt)))
        return self._submit("chunk", inputs, end=end)

    def send_raw(self, inputs: list[grpcclient.InferInput], start: bool = False, end: bool = False) -> int:
        """Send arbitrary tensors on this session (tests, debugging)."""
        return self._submit("raw", inputs, start=start, end=end)

    def receive(self, timeout_s: float | None = None) -> ChunkReply:
        """The next chunk's frames; raises StreamError if the server failed that request."""
        reply = self.next_reply(timeout_s)
        if reply.error:
            raise StreamError(f"request {reply.index} failed: {reply.error}")
        return reply

    def finish(self) -> list[ChunkReply]:
        """END the session; waits for every reply still in flight and returns them (in order)."""
        self._submit("end", [], end=True)
        replies = []
        while True:
            reply = self.next_reply()
            if reply.kind == "end":
                if reply.error:
                    raise StreamError(f"END failed: {reply.error}")
                return replies
            replies.append(reply)

    def close(self) -> None:
        self._client.stop_stream()
        self._client.close()

    def __enter__(self) -> StreamClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

