"""Streaming decoder for the causal video VAE: latents chunk by chunk -> frames, exactly.

The VAE decoder is causal in time (convs pad only past frames, norms are per frame), so a
long latent sequence can be decoded chunk by chunk if every temporal conv keeps its last
``kt - 1`` input frames. ``StreamingDecoder`` runs the decoder's own modules that way:
decoding chunks ``z_0, z_1, ...`` with the carried ``DecoderState`` gives the same frames as
``vae.decode(cat(z_0, z_1, ...))``; the first chunk yields ``1 + tc (n - 1)`` frames,
later chunks ``tc * n``.

Every conv runs as a 2D conv over ``(B * T)`` frames in channels-last layout (a temporal
kernel becomes a 2D conv over its ``kt`` stacked input frames): on CPUs this is several
times faster than the equivalent ``Conv3d`` with a (1, 3, 3) kernel.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpm_models.vae.layers import CausalConv3d, ChannelRMSNorm, ResBlock3d, Upsample
from lpm_models.vae.model import VideoVAE


@dataclass(frozen=True)
class DecoderState:
    """past: last ``kt - 1`` input frames of each temporal conv, (B, kt - 1, C, h, w) in call
    order; started: whether the stream's first latent (decoded alone) has been seen."""

    past: tuple[Tensor, ...] = ()
    started: bool = False


class _Frames:
    """Activations of T frames as (B * T, C, H, W) channels-last, plus the batch size."""

    def __init__(self, x: Tensor, batch: int) -> None:
        self.x = x
        self.batch = batch

    @property
    def frames(self) -> int:
        return self.x.shape[0] // self.batch

    def video(self) -> Tensor:
        """(B, T, C, H, W) view."""
        return self.x.reshape(self.batch, self.frames, *self.x.shape[1:])


class StreamingDecoder:
    """Decode latents of one VAE chunk by chunk, carrying the temporal conv context."""

    def __init__(self, vae: VideoVAE) -> None:
        self.vae = vae
        self.decoder = vae.decoder
        self._weights: dict[int, Tensor] = {}

    def init_state(self) -> DecoderState:
        return DecoderState()

    # ---------------------------------------------------------------- layers
    def _weight2d(self, conv: nn.Conv3d) -> Tensor:
        """(C_out, kt * C_in, kh, kw): a temporal kernel as a 2D kernel over stacked frames."""
        key = id(conv)
        w = self._weights.get(key)
        if w is None or w.device != conv.weight.device or w.dtype != conv.weight.dtype or self.vae.training:
            co, ci, kt, kh, kw = conv.weight.shape
            w = conv.weight.permute(0, 2, 1, 3, 4).reshape(co, kt * ci, kh, kw).contiguous(memory_format=torch.channels_last)
            self._weights[key] = w
        return w

    def _conv(self, conv: nn.Conv3d, h: _Frames, past: list[Tensor], new_past: list[Tensor]) -> _Frames:
        kt = conv.kernel_size[0]
        x = h.x
        if isinstance(conv, CausalConv3d):
            x = F.pad(x, conv._pad[:4])  # spatial 'same' / strided padding
        if kt > 1:
            b, t = h.batch, h.frames
            frames = x.reshape(b, t, *x.shape[1:])
            prev = past.pop(0) if past else frames.new_zeros(b, kt - 1, *frames.shape[2:])
            seq = torch.cat([prev.to(frames.dtype), frames], dim=1)  # (B, kt - 1 + T, C, H, W)
            new_past.append(seq[:, seq.shape[1] - (kt - 1) :])
            x = torch.cat([seq[:, i : i + t] for i in range(kt)], dim=2).flatten(0, 1)  # (B T, kt C, H, W)
        x = x.contiguous(memory_format=torch.channels_last)
        y = F.conv2d(x, self._weight2d(conv), conv.bias, stride=conv.stride[1:])
        return _Frames(y, h.batch)

    @staticmethod
    def _norm(norm: ChannelRMSNorm, h: _Frames) -> _Frames:
        xf = h.x.float()
        out = xf * torch.rsqrt(xf.pow(2).mean(dim=1, keepdim=True) + norm.eps)
        return _Frames(out.to(h.x.dtype) * norm.weight.view(1, -1, 1, 1), h.batch)

    def _resblock(self, block: ResBlock3d, h: _Frames, past: list[Tensor], new_past: list[Tensor]) -> _Frames:
        r = self._conv(block.conv1, _Frames(F.silu(self._norm(block.norm1, h).x), h.batch), past, new_past)
        r = self._conv(block.conv2, _Frames(F.silu(self._norm(block.norm2, r).x), h.batch), past, new_past)
        skip = h if isinstance(block.skip, nn.Identity) else self._conv(block.skip, h, past, new_past)
        return _Frames(skip.x + r.x, h.batch)

    def _upsample(self, up: Upsample, h: _Frames, past: list[Tensor], new_past: list[Tensor], first: bool) -> _Frames:
        if up.temporal is not None:
            y = self._conv(up.temporal, h, past, new_past)  # (B T, 2C, H, W)
            b, t = h.batch, h.frames
            c = y.x.shape[1] // 2
            frames = y.x.reshape(b, t, 2, c, *y.x.shape[2:]).reshape(b, 2 * t, c, *y.x.shape[2:])
            if first:
                frames = frames[:, 1:]  # the stream's first latent decodes to one frame
            h = _Frames(frames.flatten(0, 1), b)
        if up.spatial is not None:
            h = _Frames(F.interpolate(h.x, scale_factor=2.0, mode="nearest"), h.batch)
            h = self._conv(up.spatial, h, past, new_past)
        return h

    def _run(self, module: nn.Module, h: _Frames, past: list[Tensor], new_past: list[Tensor], first: bool) -> _Frames:
        if isinstance(module, nn.Sequential):
            for m in module:
                h = self._run(m, h, past, new_past, first)
            return h
        if isinstance(module, ResBlock3d):
            return self._resblock(module, h, past, new_past)
        if isinstance(module, Upsample):
            return self._upsample(module, h, past, new_past, first)
        if isinstance(module, nn.Conv3d):
            return self._conv(module, h, past, new_past)
        raise TypeError(f"StreamingDecoder does not know VAE decoder layer {type(module).__name__}; "
                        "extend lpm_models.online.vae_stream for it")

    # ---------------------------------------------------------------- public
    def decode(self, latents: Tensor, state: DecoderState) -> tuple[Tensor, DecoderState]:
        """Normalised latents (B, n, C, h, w) -> (frames (B, F, 3, H, W) unclamped, new state).

        F = 1 + tc (n - 1) for the stream's first chunk, tc * n afterwards.
        """
        b, n = latents.shape[:2]
        mu, std = self.vae._stats(latents)
        z = (latents * std + mu).flatten(0, 1)  # (B n, C, h, w)
        past, new_past = list(state.past), []
        first = not state.started
        dec = self.decoder
        h = self._conv(dec.conv_in, _Frames(z.contiguous(memory_format=torch.channels_last), b), past, new_past)
        h = self._resblock(dec.mid, h, past, new_past)
        h = self._run(dec.up, h, past, new_past, first)
        h = _Frames(F.silu(self._norm(dec.norm_out, h).x), b)
        h = self._conv(dec.conv_out, h, past, new_past)
        rgb = F.pixel_shuffle(h.x, dec.patch_size) if dec.patch_size > 1 else h.x  # (B F, 3, H, W)
        frames = rgb.reshape(b, -1, *rgb.shape[1:]).contiguous()
        return frames, DecoderState(tuple(new_past), True)

    def decode_all(self, latents: Tensor, chunk: int) -> Tensor:
        """Decode a whole latent sequence in chunks of ``chunk`` latents (B, T, 3, H, W)."""
        state = self.init_state()
        out = []
        for start in range(0, latents.shape[1], chunk):
            frames, state = self.decode(latents[:, start : start + chunk], state)
            out.append(frames)
        return torch.cat(out, dim=1)
