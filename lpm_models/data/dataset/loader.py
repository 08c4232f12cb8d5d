"""Torch loader over curated shards: random fixed-length temporal windows with their conditions.

Each yielded item (default collate stacks them into a batch)::

    video          (T, 3, H, W) float32 in [-1, 1]
    audio_self     (T * sample_rate / fps,) float32 in [-1, 1]   the character's speech
    audio_other    (T * sample_rate / fps,) float32 in [-1, 1]   the interlocutor's speech
    labels         (T,) int64, 0 idle / 1 speak / 2 listen
    ref_appearance (3, h, w) float32 in [-1, 1]
    ref_pose       (max_pose, 3, h, w) float32, zero-padded; ref_pose_mask (max_pose,) bool
    ref_expr       (max_expr, 3, h, w) float32, zero-padded; ref_expr_mask (max_expr,) bool
    caption        str;  clip_id, identity str;  start int (window start, clip frames)

Work is split over distributed ranks and dataloader workers by shard when there are enough
shards, otherwise by sample index, so every sample is seen once per epoch per window draw.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from lpm_models.data.dataset import codec
from lpm_models.data.dataset.shards import CuratedSample, decode_sample, iter_samples

log = logging.getLogger(__name__)


def _to_unit_range(images: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [-1, 1]."""
    channels_first = np.ascontiguousarray(np.moveaxis(images, -1, -3))  # uint8 copy: cheaper than float
    return torch.from_numpy(channels_first).to(torch.float32).mul_(1.0 / 127.5).sub_(1.0)


def _padded_refs(images: list[np.ndarray], slots: int, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to ``slots`` (h, w, 3) uint8 images -> ((slots, 3, h, w) float, (slots,) bool mask)."""
    out = torch.zeros(slots, 3, *size)
    mask = torch.zeros(slots, dtype=torch.bool)
    for i, image in enumerate(images[:slots]):
        if image.shape[:2] != size:
            raise ValueError(f"reference images of one sample must share a size: {image.shape[:2]} vs {size}")
        out[i] = _to_unit_range(image)
        mask[i] = True
    return out, mask


def window_item(sample: CuratedSample, start: int, window: int, max_pose: int = 4,
                max_expr: int = 8) -> dict[str, Any]:
    """Tensors of frames [start, start + window) of a decoded sample (see module docstring)."""
    if start < 0 or start + window > len(sample.frames):
        raise ValueError(f"window [{start}, {start + window}) outside clip {sample.clip.clip_id} "
                         f"of {len(sample.frames)} frames")
    per_frame = sample.sample_rate / sample.fps
    a0, n_audio = int(round(start * per_frame)), int(round(window * per_frame))

    def audio(pcm: np.ndarray) -> torch.Tensor:
        piece = codec.int16_to_float(pcm[a0:a0 + n_audio])
        return torch.from_numpy(np.pad(piece, (0, n_audio - len(piece))))

    refs = sample.references
    ref_size = refs.appearance.image.shape[:2]
    pose, pose_mask = _padded_refs([r.image for r in refs.poses], max_pose, ref_size)
    expr, expr_mask = _padded_refs([r.image for r in refs.expressions], max_expr, ref_size)
    return {
        "video": _to_unit_range(sample.frames[start:start + window]),
        "audio_self": audio(sample.self_audio), "audio_other": audio(sample.other_audio),
        "labels": torch.from_numpy(sample.labels[start:start + window].astype(np.int64)),
        "ref_appearance": _to_unit_range(refs.appearance.image),
        "ref_pose": pose, "ref_pose_mask": pose_mask, "ref_expr": expr, "ref_expr_mask": expr_mask,
        "caption": sample.caption, "clip_id": sample.clip.clip_id, "identity": sample.identity, "start": start,
    }


class CuratedWindowDataset(IterableDataset):
    """Random ``window_frames``-long windows of curated clips (``windows_per_clip`` per clip and epoch).

    Clips shorter than the window are skipped (counted in ``skipped_short``). Call
    :meth:`set_epoch` between epochs to reshuffle; the same (seed, epoch) gives the same order.
    """

    def __init__(
        self, shard_paths: Sequence[Path], window_frames: int, *, windows_per_clip: int = 1,
        shuffle: bool = True, seed: int = 0, rank: int = 0, world_size: int = 1,
        max_pose: int = 4, max_expr: int = 8, shuffle_buffer: int = 8,
    ) -> None:
        super().__init__()
        if not shard_paths:
            raise ValueError("no shard paths given; pass Manifest.shard_paths(dataset_dir)")
        if window_frames < 1 or windows_per_clip < 1:
            raise ValueError(f"window_frames and windows_per_clip must be >= 1, "
                             f"got {window_frames}, {windows_per_clip}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        self.shard_paths = [Path(p) for p in shard_paths]
        self.window_frames, self.windows_per_clip = window_frames, windows_per_clip
        self.shuffle, self.seed, self.rank, self.world_size = shuffle, seed, rank, world_size
        self.max_pose, self.max_expr, self.shuffle_buffer = max_pose, max_expr, max(1, shuffle_buffer)
        self.epoch = 0
        self.skipped_short = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _unit(self) -> tuple[int, int]:
        """(this reader's index, number of readers) over ranks x dataloader workers."""
        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info is not None else (1, 0)
        return self.rank * workers + worker, self.world_size * workers

    def _raw_samples(self) -> Iterator[dict[str, Any]]:
        unit, units = self._unit()
        order = list(range(len(self.shard_paths)))
        if self.shuffle:
            order = list(np.random.default_rng([self.seed, self.epoch]).permutation(order))  # same on all readers
        if len(order) >= units:
            yield from iter_samples([self.shard_paths[i] for i in order[unit::units]])
            return
        for index, raw in enumerate(iter_samples([self.shard_paths[i] for i in order])):
            if index % units == unit:
                yield raw

    def _buffered(self, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
        buffer: list[dict[str, Any]] = []
        for raw in self._raw_samples():
            buffer.append(raw)
            if len(buffer) >= self.shuffle_buffer:
                yield buffer.pop(int(rng.integers(len(buffer))) if self.shuffle else 0)
        while buffer:
            yield buffer.pop(int(rng.integers(len(buffer))) if self.shuffle else 0)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        unit, _ = self._unit()
        rng = np.random.default_rng([self.seed, self.epoch, unit])
        for raw in self._buffered(rng):
            sample = decode_sample(raw)
            n = len(sample.frames)
            if n < self.window_frames:
                self.skipped_short += 1
                log.debug("skipping clip %s: %d frames < window %d", sample.clip.clip_id, n, self.window_frames)
                continue
            for _ in range(self.windows_per_clip):
                start = int(rng.integers(0, n - self.window_frames + 1)) if self.shuffle else 0
                yield window_item(sample, start, self.window_frames, self.max_pose, self.max_expr)
