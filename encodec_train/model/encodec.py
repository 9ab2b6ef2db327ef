"""The EnCodec model: SEANet encoder → residual VQ → SEANet decoder, with the 48 kHz model's
1-second chunks, 1% overlap and per-chunk loudness normalisation (paper §3, §3.1).

Plain PyTorch: `from encodec_train.model import EncodecModel` works without Lightning or Hydra.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn.utils import parametrize

from encodec_train.model.bandwidth import check_target_bandwidths, latent_frame_rate
from encodec_train.model.checkpoint import load_weights, read_model_checkpoint
from encodec_train.model.inference import inference_copy
from encodec_train.model.init import initialize_
from encodec_train.model.quantizer import ResidualVectorQuantizer
from encodec_train.model.seanet import SEANetDecoder, SEANetEncoder, SEANetShape
from encodec_train.model.streaming import (
    StreamingDecoder,
    StreamingEncoder,
    StreamingLatency,
    streaming_latency,
)


@dataclass
class CodecStream:
    """An encoder stream and a decoder stream over one model (`EncodecModel.streaming`)."""

    encoder: StreamingEncoder
    decoder: StreamingDecoder


class EncodedFrame(NamedTuple):
    """Codes of one chunk, [batch, n_q, frames], and its scale [batch, 1] (or None)."""

    codes: torch.Tensor
    scale: torch.Tensor | None


@dataclass
class CodecOutput:
    """Result of `EncodecModel.forward`.

    Attributes:
        audio: reconstruction, [batch, channels, time] (same length as the input).
        frames: the codes and scales of each chunk.
        commitment_loss: scalar, averaged over chunks (0 in eval mode).
        metrics: codebook usage, perplexity and replaced dead codes per level (training mode),
            on the device; each the mean over the chunks (one codebook update per chunk).
    """

    audio: torch.Tensor
    frames: list[EncodedFrame]
    commitment_loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)


def linear_overlap_add(frames: Sequence[torch.Tensor], stride: int) -> torch.Tensor:
    """Overlap-add `[..., time]` frames placed `stride` apart with triangular weights, then
    divide by the summed weights, so a position covered once is unchanged and an overlap
    cross-fades linearly from one frame to the next."""
    frame_length = frames[0].shape[-1]
    device, dtype = frames[0].device, frames[0].dtype
    total = stride * (len(frames) - 1) + frames[-1].shape[-1]
    t = torch.linspace(0, 1, frame_length + 2, device=device, dtype=dtype)[1:-1]
    weight = 0.5 - (t - 0.5).abs()
    out = torch.zeros(*frames[0].shape[:-1], total, device=device, dtype=dtype)
    weight_sum = torch.zeros(total, device=device, dtype=dtype)
    for index, frame in enumerate(frames):
        start, length = index * stride, frame.shape[-1]
        out[..., start : start + length] += weight[:length] * frame
        weight_sum[start : start + length] += weight[:length]
    return out / weight_sum


class EncodecModel(nn.Module):
    """EnCodec generator. Every argument is plain data, so `config` rebuilds the model.

    Args:
        sample_rate: audio sample rate (Hz).
        channels: 1 (mono) or 2 (stereo).
        target_bandwidths: bandwidths offered, in kbps, each a whole number of codebooks of
            log2(codebook_size) bits at `frame_rate` frames/s; the largest sets the number of
            codebooks.
        causal: causal padding everywhere (streaming model).
        norm: "weight_norm" (24 kHz) or "time_group_norm" (48 kHz).
        normalize: divide each chunk by its RMS (kept as side information) before encoding.
        segment_seconds: chunk length for encoding (None = the whole input at once).
        overlap: overlap between chunks, as a fraction of the chunk length.
        n_filters, dimension, ratios, n_residual_layers, lstm_layers, pad_mode, trim_right_ratio:
            SEANet shape (see `SEANetShape`).
        codebook_size, ema_decay, kmeans_iters, dead_code_threshold, commitment_weight,
        commitment_reduction, commitment_gradient: residual VQ (see
        `ResidualVectorQuantizer`).
        name: model name written into `.ecdc` files.
        strict_bandwidths: refuse a target bandwidth that is not a whole number of codebooks
            (ValueError naming the nearest valid ones). False rounds down to the codebooks
            that fit, as the official package does; models saved before the check existed
            load that way.
        init: "pytorch" (PyTorch's default initialisation, as the official models) or
            "unit_norm" (unit-norm filters, zero biases: the latent depends on the input from
            the first step; see `encodec_train.model.init`). Weights loaded afterwards win.
    """

    def __init__(
        self,
        sample_rate: int = 24_000,
        channels: int = 1,
        target_bandwidths: Sequence[float] = (1.5, 3.0, 6.0, 12.0, 24.0),
        causal: bool = True,
        norm: str = "weight_norm",
        normalize: bool = False,
        segment_seconds: float | None = None,
        overlap: float = 0.01,
        n_filters: int = 32,
        dimension: int = 128,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        lstm_layers: int = 2,
        pad_mode: str = "reflect",
        trim_right_ratio: float = 1.0,
        codebook_size: int = 1024,
        ema_decay: float = 0.99,
        kmeans_iters: int = 50,
        dead_code_threshold: float = 2.0,
        commitment_weight: float = 1.0,
        commitment_reduction: str = "sum",
        commitment_gradient: str = "first_level",
        name: str = "unset",
        strict_bandwidths: bool = True,
        init: str = "pytorch",
    ) -> None:
        super().__init__()
        self.config: dict[str, Any] = {
            key: list(value) if isinstance(value, (tuple, list)) else value
            for key, value in locals().items()
            if key not in ("self", "__class__")
        }
        if channels not in (1, 2):
            raise ValueError(f"channels={channels}: EnCodec models are mono (1) or stereo (2)")
        self.sample_rate = sample_rate
        self.channels = channels
        self.target_bandwidths = sorted(float(b) for b in target_bandwidths)
        self.causal = causal
        self.normalize = normalize
        self.segment_seconds = segment_seconds
        self.overlap = overlap
        self.name = name
        shape = SEANetShape(
            channels=channels,
            dimension=dimension,
            n_filters=n_filters,
            ratios=tuple(ratios),
            n_residual_layers=n_residual_layers,
            lstm_layers=lstm_layers,
            causal=causal,
            norm=norm,
            pad_mode=pad_mode,
        )
        self.encoder = SEANetEncoder(shape)
        self.decoder = SEANetDecoder(shape, trim_right_ratio=trim_right_ratio)
        self.hop_length = self.encoder.hop_length
        self.frame_rate = latent_frame_rate(sample_rate, self.hop_length)
        codebooks = check_target_bandwidths(
            self.target_bandwidths, codebook_size, self.frame_rate, strict=strict_bandwidths
        )
        self._codebooks_at = dict(zip(self.target_bandwidths, codebooks, strict=True))
        self.quantizer = ResidualVectorQuantizer(
            dimension=dimension,
            n_q=codebooks[-1],
            codebook_size=codebook_size,
            decay=ema_decay,
            kmeans_iters=kmeans_iters,
            dead_code_threshold=dead_code_threshold,
            commitment_weight=commitment_weight,
            commitment_reduction=commitment_reduction,
            commitment_gradient=commitment_gradient,
        )
        initialize_(self, init)

    # -- sizes ---------------------------------------------------------------------------

    @property
    def segment_length(self) -> int | None:
        """Chunk length in samples, or None when the model encodes its input in one piece."""
        return (
            None if self.segment_seconds is None else int(self.segment_seconds * self.sample_rate)
        )

    @property
    def segment_stride(self) -> int | None:
        length = self.segment_length
        return None if length is None else max(1, int((1 - self.overlap) * length))

    def num_codebooks(self, bandwidth: float | None) -> int:
        """Codebooks used at `bandwidth` kbps (one of `target_bandwidths`; None = the largest)."""
        if bandwidth is None:
            return self.quantizer.n_q
        if float(bandwidth) not in self._codebooks_at:
            raise ValueError(
                f"bandwidth={bandwidth} kbps is not offered by this model; "
                f"choose one of {self.target_bandwidths}"
            )
        return self._codebooks_at[float(bandwidth)]

    # -- inference -----------------------------------------------------------------------

    def encode(
        self, x: torch.Tensor, bandwidth: float | None = None, sample_rate: int | None = None
    ) -> list[EncodedFrame]:
        """Waveform [batch, channels, time] → codes and scales per chunk.

        `bandwidth` (kbps) selects the number of codebooks (None = all of them, as the official
        model). Pass `sample_rate` to have it checked against the model's.
        """
        self._check_input(x, sample_rate)
        n_q = self.num_codebooks(bandwidth)
        frames = []
        # Weight-norm weights are computed once per call instead of once per conv call.
        with parametrize.cached():
            for chunk in self._chunks(x):
                chunk, scale = self._normalize(chunk)
                codes = self.quantizer.encode(self.encoder(chunk), n_q)
                frames.append(EncodedFrame(codes.transpose(0, 1), scale))
        return frames

    def decode(self, frames: Sequence[EncodedFrame]) -> torch.Tensor:
        """Codes and scales per chunk → waveform [batch, channels, time'] (time' ≥ input length,
        a multiple of the hop per chunk; `forward` trims it)."""
        with parametrize.cached():
            audio = [self._decode_chunk(f.codes.transpose(0, 1), f.scale) for f in frames]
        if len(audio) == 1:
            return audio[0]
        return linear_overlap_add(audio, self.segment_stride)

    # -- streaming -----------------------------------------------------------------------

    @contextmanager
    def streaming(self, bandwidth: float | None = None) -> Iterator[CodecStream]:
        """A fresh encoder and decoder stream (causal models only; see
        `encodec_train.model.streaming`), closed when the block ends:

            with model.streaming(bandwidth=6.0) as stream:
                codes = stream.encoder.push(chunk)   # codes of the frames completed so far
                audio = stream.decoder.push(codes)   # audio those codes make final
            ...  stream.encoder.flush(), stream.decoder.flush() at the end of the signal

        Each call starts from empty state; streams opened side by side share none.
        """
        stream = CodecStream(StreamingEncoder(self, bandwidth), StreamingDecoder(self))
        try:
            yield stream
        finally:
            stream.encoder.closed = stream.decoder.closed = True

    def for_inference(self, compile: bool = False) -> EncodecModel:
        """A fast copy for inference (see `encodec_train.model.inference.inference_copy`):
        weight norm folded, no autograd, optionally `torch.compile`d; this model is untouched."""
        return inference_copy(self, compile=compile)

    def streaming_latency(self) -> StreamingLatency:
        """Steady-state and start-up latency of streaming with this model."""
        return streaming_latency(self)

    # -- training ------------------------------------------------------------------------

    def forward(
        self,
        x: torch.Tensor,
        bandwidth: float | None = None,
        sample_rate: int | None = None,
        n_q: int | None = None,
        generator: torch.Generator | None = None,
    ) -> CodecOutput:
        """Encode, quantise and decode `x` [batch, channels, time] at `bandwidth` kbps, or
        with exactly `n_q` codebooks when given (audiocraft's training draws n_q directly).

        In training mode the codebooks learn (k-means, EMA) and the commitment loss is returned;
        gradients flow through the straight-through estimator. An input no longer than one
        chunk is one chunk (the 48 kHz model trains on 1 s segments, each one chunk: the 1%
        overlap, and the 10 ms tail chunk `encode` would add, are for inference; paper §3.1).
        The codebooks' random draws
        (k-means starting rows, dead-code replacements) come from `generator`, a CPU
        generator in the same state on every rank (None: torch's default generator).
        """
        # Checking values would sync the GPU every step; training data is checked when read.
        self._check_input(x, sample_rate, check_values=not self.training)
        if n_q is None:
            n_q = self.num_codebooks(bandwidth)
        elif not 1 <= n_q <= self.quantizer.n_q:
            raise ValueError(f"n_q={n_q}: this model has 1 to {self.quantizer.n_q} codebooks")
        frames, audio, losses, chunk_metrics = [], [], [], []
        whole = self.segment_length is None or x.shape[-1] <= self.segment_length
        for chunk in [x] if whole else self._chunks(x):
            chunk, scale = self._normalize(chunk)
            result = self.quantizer(self.encoder(chunk), n_q, generator=generator)
            decoded = self.decoder(result.quantized)
            audio.append(decoded if scale is None else decoded * scale[:, :, None])
            frames.append(EncodedFrame(result.codes.transpose(0, 1), scale))
            losses.append(result.commitment_loss)
            chunk_metrics.append(result.metrics)
        joined = audio[0] if len(audio) == 1 else linear_overlap_add(audio, self.segment_stride)
        metrics = {
            name: torch.stack([m[name] for m in chunk_metrics]).mean() for name in chunk_metrics[0]
        }
        return CodecOutput(joined[..., : x.shape[-1]], frames, torch.stack(losses).mean(), metrics)

    # -- checkpoints ---------------------------------------------------------------------

    @classmethod
    def from_checkpoint(cls, path: str | Path, use_ema: bool = True) -> EncodecModel:
        """Build the model from one of our checkpoints alone (no config files needed).

        Accepts a training checkpoint (`last.ckpt`) or a model file from
        `encodec_train.model.checkpoint.save_model`; with `use_ema` the EMA generator weights
        are used when the checkpoint holds them.
        """
        weights = read_model_checkpoint(path, use_ema=use_ema)
        # Configs written before `strict_bandwidths` existed were built with rounded-down
        # bandwidths; they keep loading as they were trained.
        model = cls(**{"strict_bandwidths": False, **weights.model_config})
        load_weights(model, weights.generator, str(path))
        return model.eval()

    # -- helpers -------------------------------------------------------------------------

    def _check_input(
        self, x: torch.Tensor, sample_rate: int | None, check_values: bool = True
    ) -> None:
        if x.dim() != 3:
            raise ValueError(f"audio must be [batch, channels, time], got shape {tuple(x.shape)}")
        if x.shape[1] != self.channels:
            raise ValueError(
                f"audio has {x.shape[1]} channel(s) but the model expects {self.channels}"
            )
        if x.shape[-1] == 0 or x.shape[0] == 0:
            raise ValueError(f"audio is empty (shape {tuple(x.shape)})")
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise ValueError(
                f"audio sample rate {sample_rate} Hz differs from the model's {self.sample_rate} Hz;"
                " resample it first"
            )
        if check_values and not bool(torch.isfinite(x).all()):
            raise ValueError("audio contains NaN or infinite samples")

    def _chunks(self, x: torch.Tensor) -> list[torch.Tensor]:
        length, stride = self.segment_length, self.segment_stride
        if length is None:
            return [x]
        return [x[..., offset : offset + length] for offset in range(0, x.shape[-1], stride)]

    def _normalize(self, chunk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Divide by 1e-8 + RMS of the channel mean, as the official 48 kHz model."""
        if not self.normalize:
            return chunk, None
        mono = chunk.mean(dim=1, keepdim=True)
        scale = 1e-8 + mono.pow(2).mean(dim=2, keepdim=True).sqrt()
        return chunk / scale, scale.view(-1, 1)

    def _decode_chunk(self, codes: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
        audio = self.decoder(self.quantizer.decode(codes))
        return audio if scale is None else audio * scale[:, :, None]
