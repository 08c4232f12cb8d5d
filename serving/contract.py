"""The Triton tensor contract of a served Online LPM (names, Triton dtypes, dims without batch).

A session is a Triton sequence (``sequence_id`` = correlation id, an unsigned integer).
Every tensor carries a leading batch dimension of 1 (the model's ``max_batch_size`` is the
number of sequence slots per instance); the dims below exclude it.

Requests (all data inputs optional; which ones a request carries depends on its role):

    START request   CHARACTER_IMAGE  UINT8  (H, W, 3)     required on START, RGB, any size
                    REFERENCES       UINT8  (R, H, W, 3)  optional identity references (R <= max_refs - 1)
                    PROMPT           BYTES  (1,)          optional UTF-8 text prompt
                    SEED             INT64  (1,)          optional; default derived from the sequence id
    chunk request   SELF_AUDIO       FP32   (S,)          character speech, S <= chunk_samples (mono, model rate)
                    OTHER_AUDIO      FP32   (S,)          user speech, same S (zeros = silence)
                    PROMPT           BYTES  (1,)          optional prompt update, effective from this chunk
    END request     may carry a last audio chunk; frees the session.

A START may also carry the first audio chunk. Shorter final chunks are zero-padded.

Responses (decoupled; each request ends with an empty response flagged final):

    START           STREAM_INFO      BYTES  (1,)          JSON: seed, chunk_samples, sample_rate, fps,
                                                          chunk_frames, first_chunk_frames, height, width,
                                                          model, version, registered_model, run_id
    per chunk       FRAMES           UINT8  (F, H, W, 3)  RGB frames (whole chunk, or frames_per_response)
                    CHUNK_INDEX      INT64  (1,)          0-based chunk number of the session
                    FIRST_FRAME      INT64  (1,)          global index of FRAMES[0] in the session's video
                    RUNTIME_STATE    BYTES  (1,)          warmup / idle / listening / responding
    errors          a TritonError response (final); the server and other sessions carry on.
"""

from __future__ import annotations

from dataclasses import dataclass

START, END, READY, CORRID = "START", "END", "READY", "CORRID"
CHARACTER_IMAGE, REFERENCES, PROMPT, SEED = "CHARACTER_IMAGE", "REFERENCES", "PROMPT", "SEED"
SELF_AUDIO, OTHER_AUDIO = "SELF_AUDIO", "OTHER_AUDIO"
STREAM_INFO, FRAMES, CHUNK_INDEX, FIRST_FRAME, RUNTIME_STATE = (
    "STREAM_INFO", "FRAMES", "CHUNK_INDEX", "FIRST_FRAME", "RUNTIME_STATE")


@dataclass(frozen=True)
class TensorSpec:
    name: str
    triton_type: str  # config.pbtxt data_type without TYPE_ (UINT8, FP32, INT64, STRING)
    dims: tuple[int, ...]

    @property
    def client_type(self) -> str:
        """The datatype string tritonclient uses (BYTES for STRING)."""
        return "BYTES" if self.triton_type == "STRING" else self.triton_type


INPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(CHARACTER_IMAGE, "UINT8", (-1, -1, 3)),
    TensorSpec(REFERENCES, "UINT8", (-1, -1, -1, 3)),
    TensorSpec(PROMPT, "STRING", (1,)),
    TensorSpec(SEED, "INT64", (1,)),
    TensorSpec(SELF_AUDIO, "FP32", (-1,)),
    TensorSpec(OTHER_AUDIO, "FP32", (-1,)),
)
OUTPUTS: tuple[TensorSpec, ...] = (
    TensorSpec(STREAM_INFO, "STRING", (1,)),
    TensorSpec(FRAMES, "UINT8", (-1, -1, -1, 3)),
    TensorSpec(CHUNK_INDEX, "INT64", (1,)),
    TensorSpec(FIRST_FRAME, "INT64", (1,)),
    TensorSpec(RUNTIME_STATE, "STRING", (1,)),
)
SPECS = {spec.name: spec for spec in INPUTS + OUTPUTS}
