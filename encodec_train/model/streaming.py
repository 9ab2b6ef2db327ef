"""Streaming encode and decode for causal models: chunks of any size in, codes or audio out as
soon as they are final, with the padding, convolution and LSTM state kept between chunks.

The concatenated output of a stream equals the offline `EncodecModel.encode` / `decode` of the
whole signal. What a stream emits, and when:

- Steady state. Code frame t depends on samples up to (t + 1)·hop − 1 only, so it is emitted
  as soon as its last sample arrives: the algorithmic latency is one frame (hop samples,
  13.3 ms at 24 kHz, the paper's figure). The decoder adds none: code frame t gives audio
  samples t·hop … (t + 1)·hop − 1 at once.
- Start-up. The official models pad each convolution's left edge by reflection (`pad_mode:
  reflect`), which mirrors the first samples of the signal: a convolution with left padding
  P cannot emit its first output before it has P + 1 inputs. So the first codes and the first
  audio come later than one frame (`StreamingLatency.first_*`), then the stream catches up and
  runs at one frame of latency. Zero padding (`pad_mode: constant`) has no start-up delay.
- End of stream. Offline, each strided convolution pads the end of the signal to a whole
  number of its windows (`extra_padding_for_conv1d`), so the last, partial frame exists only
  once the signal is known to end. `flush()` applies that padding and emits everything that
  is left: the partial last frame, and anything a signal too short to start a convolution
  held back. Concatenating every `push` and the `flush` gives exactly the offline output:
  ceil(T / hop) code frames for T samples, and frames · hop audio samples (the offline
  decoder's length; trim to T as `EncodecModel.forward` does).

Each stream holds its own state (a tree of nodes mirroring the model's layers, reading the
model's weights), so streams never share state: two streams over one model run side by side.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from encodec_train.model.conv import (
    StreamableConv1d,
    StreamableConvTranspose1d,
    extra_padding_for_conv1d,
    pad1d,
)
from encodec_train.model.lstm import StreamableLSTM
from encodec_train.model.seanet import SEANetDecoder, SEANetEncoder, SEANetResnetBlock

if TYPE_CHECKING:
    from encodec_train.model.encodec import EncodecModel

# Left-pad inputs a convolution needs before its padding is known: reflection mirrors
# x[1..P] (P + 1 samples), replication repeats x[0], zeros need nothing.
_START_NEEDS = {
    "constant": lambda p: 0,
    "replicate": lambda p: min(p, 1),
    "reflect": lambda p: p + 1,
}


def check_streamable(model: EncodecModel) -> None:
    """Refuse a model whose offline output a stream cannot reproduce, saying why."""
    reasons = []
    if not model.causal:
        reasons.append("it is not causal (its padding looks ahead)")
    if model.segment_length is not None:
        reasons.append(
            f"it encodes {model.segment_seconds} s chunks with {model.overlap:.0%} overlap "
            "cross-faded at decoding"
        )
    if model.normalize:
        reasons.append("it divides each chunk by the chunk's RMS, known only at the chunk's end")
    if model.config.get("pad_mode", "reflect") not in _START_NEEDS:
        reasons.append(f"pad_mode={model.config['pad_mode']!r} takes its left padding from the end")
    if reasons:
        raise ValueError(
            f"model {model.name!r} cannot stream: " + "; ".join(reasons) + ". Encode it offline "
            "with model.encode / model.decode, which handle the chunks (the 48 kHz model is "
            "non-causal and works on 1-second segments)."
        )


class _Node:
    """One layer of a stream: `push` input columns, get the output columns that are final."""

    def push(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        """The outputs held back until the input is known to end. `template` is an empty
        input ([batch, channels, 0]) that carries the batch size, dtype and device."""
        raise NotImplementedError

    def count(self, n: int) -> int:
        """Outputs emitted, before `flush`, once `n` inputs have been pushed."""
        raise NotImplementedError


class _Pointwise(_Node):
    """ELU, identity: each column on its own, nothing held back."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return template

    def count(self, n: int) -> int:
        return n


class _Sequence(_Node):
    def __init__(self, nodes: Sequence[_Node]) -> None:
        self.nodes = list(nodes)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        for node in self.nodes:
            x = node.push(x)
        return x

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        out = self.nodes[0].flush(template)
        for node in self.nodes[1:]:
            out = torch.cat([node.push(out), node.flush(out[..., :0])], dim=-1)
        return out

    def count(self, n: int) -> int:
        for node in self.nodes:
            n = node.count(n)
        return n


class _Residual(_Node):
    """shortcut(x) + block(x); the branch that runs ahead waits for the other."""

    def __init__(self, shortcut: _Node, block: _Node) -> None:
        self.shortcut, self.block = shortcut, block
        self.ahead: torch.Tensor | None = None  # outputs of one branch the other has not reached
        self.ahead_is_shortcut = True

    def _add(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if self.ahead is not None:
            if self.ahead_is_shortcut:
                a = torch.cat([self.ahead, a], dim=-1)
            else:
                b = torch.cat([self.ahead, b], dim=-1)
        n = min(a.shape[-1], b.shape[-1])
        self.ahead_is_shortcut = a.shape[-1] > n
        self.ahead = a[..., n:] if self.ahead_is_shortcut else b[..., n:]
        return a[..., :n] + b[..., :n]

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return self._add(self.shortcut.push(x), self.block.push(x))

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return self._add(self.shortcut.flush(template), self.block.flush(template))

    def count(self, n: int) -> int:
        return min(self.shortcut.count(n), self.block.count(n))


class _Conv(_Node):
    """Causal `StreamableConv1d`: the left padding once the first inputs allow it, then the
    inputs a window still needs kept between pushes; the end padding at `flush`."""

    def __init__(self, layer: StreamableConv1d) -> None:
        self.layer = layer
        self.kernel, self.stride = layer.effective_kernel, layer.stride
        self.padding = layer.padding_total
        self.start_needs = _START_NEEDS[layer.pad_mode](self.padding)
        if layer.pad_mode == "reflect" and self.stride > 1 and self.padding < self.stride:
            # The end padding mirrors up to stride − 1 inputs; the kept inputs must hold them.
            raise ValueError(
                f"kernel {layer.kernel_size} with stride {self.stride}: reflect padding at the "
                "end needs more inputs than a stream keeps"
            )
        self.buffer: torch.Tensor | None = None
        self.started = False
        self.received = 0

    def _empty(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(like.shape[0], self.layer.conv.conv.out_channels, 0)

    def _windows(self, padded: torch.Tensor) -> torch.Tensor:
        """Every whole window of `padded`; keep what the next window needs."""
        length = padded.shape[-1]
        n = (length - self.kernel) // self.stride + 1 if length >= self.kernel else 0
        self.buffer = padded[..., n * self.stride :]
        if n == 0:
            return self._empty(padded)
        # The conv itself, without the module calls around it (their cost is most of a
        # push's on small chunks); its norm is the identity in every causal model.
        conv = self.layer.conv.conv
        used = padded[..., : (n - 1) * self.stride + self.kernel]
        return F.conv1d(used, conv.weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.received += x.shape[-1]
        buffer = x if self.buffer is None else torch.cat([self.buffer, x], dim=-1)
        if not self.started:
            if buffer.shape[-1] < self.start_needs:
                self.buffer = buffer
                return self._empty(buffer)
            buffer = pad1d(buffer, (self.padding, 0), self.layer.pad_mode)
            self.started = True
        return self._windows(buffer)

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        if not self.started:
            # Too short to start: the offline layer on the whole (short) input.
            whole = template if self.buffer is None else self.buffer
            return self.layer(whole) if whole.shape[-1] else self._empty(whole)
        extra = extra_padding_for_conv1d(self.received, self.kernel, self.stride, self.padding)
        return self._windows(pad1d(self.buffer, (0, extra), self.layer.pad_mode))

    def count(self, n: int) -> int:
        padded = n + self.padding
        if n < self.start_needs or padded < self.kernel:
            return 0
        return (padded - self.kernel) // self.stride + 1


class _ConvTranspose(_Node):
    """Causal `StreamableConvTranspose1d`: each input frame's window overlaps the next
    (kernel − stride samples), so that tail is kept and added to the next push's head."""

    def __init__(self, layer: StreamableConvTranspose1d) -> None:
        self.conv = layer.convtr.convtr
        self.stride = self.conv.stride[0]
        self.trim_left, _ = layer.trim
        self.to_drop = self.trim_left  # offline output starts trim_left samples in
        self.tail: torch.Tensor | None = None

    def _emit(self, y: torch.Tensor) -> torch.Tensor:
        if self.to_drop:
            dropped = min(self.to_drop, y.shape[-1])
            y, self.to_drop = y[..., dropped:], self.to_drop - dropped
        bias = self.conv.bias
        return y if bias is None else y + bias[:, None]

    def _transposed(self, x: torch.Tensor) -> torch.Tensor:
        """The full transposed convolution of `x`, without bias: [batch, out, (n−1)·s + k]."""
        conv, stride = self.conv, self.stride
        weight = conv.weight
        in_channels, out_channels, kernel = weight.shape
        if conv.groups != 1 or conv.dilation[0] != 1 or kernel % stride:
            return F.conv_transpose1d(x, weight, None, stride, 0, 0, conv.groups, conv.dilation)
        # One matrix product gives every frame's window; overlap-add them `stride` apart.
        # On a few frames this is up to 15× faster than CPU `conv_transpose1d` (same sums).
        batch, _, frames = x.shape
        shifts = kernel // stride
        windows = torch.matmul(x.transpose(1, 2), weight.reshape(in_channels, -1))
        windows = windows.view(batch, frames, out_channels, shifts, stride)
        out = windows.new_zeros(batch, frames + shifts - 1, out_channels, stride)
        for shift in range(shifts):
            out[:, shift : shift + frames] += windows[:, :, :, shift]
        return out.permute(0, 2, 1, 3).reshape(batch, out_channels, -1)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x.new_zeros(x.shape[0], self.conv.out_channels, 0)
        y = self._transposed(x)
        if self.tail is not None:
            overlap = self.tail.shape[-1]
            y = torch.cat([y[..., :overlap] + self.tail, y[..., overlap:]], dim=-1)
        final = x.shape[-1] * self.stride
        self.tail = y[..., final:]
        return self._emit(y[..., :final])

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        # Offline keeps trim_left samples of the last window's tail and trims the rest.
        if self.tail is None:
            return template.new_zeros(template.shape[0], self.conv.out_channels, 0)
        return self._emit(self.tail[..., : self.trim_left])

    def count(self, n: int) -> int:
        return max(0, n * self.stride - self.trim_left)


class _LSTM(_Node):
    """`StreamableLSTM` with its hidden and cell state carried from push to push.

    A push of a few frames (the usual streaming case) runs the LSTM equations step by step
    with plain matrix products: `nn.LSTM` on CPU goes through oneDNN, whose fixed cost per
    call is ~4× the work of a 2-frame push; longer pushes use `nn.LSTM` itself."""

    STEP_BY_STEP_BELOW = 8

    def __init__(self, layer: StreamableLSTM) -> None:
        self.layer = layer
        self.state: tuple[torch.Tensor, torch.Tensor] | None = None

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        """x [time, batch, dim] through every layer, one time step at a time."""
        lstm = self.layer.lstm
        steps, batch, dim = x.shape
        if self.state is None:
            zeros = x.new_zeros(lstm.num_layers, batch, lstm.hidden_size)
            self.state = (zeros, zeros)
        hidden, cell = list(self.state[0]), list(self.state[1])
        for layer in range(lstm.num_layers):
            w_ih, w_hh, b_ih, b_hh = lstm.all_weights[layer]
            # Input projections of every step at once; then the recurrence.
            gates_in = torch.addmm(b_ih + b_hh, x.reshape(-1, x.shape[-1]), w_ih.t())
            gates_in = gates_in.view(steps, batch, -1)
            outputs = []
            h, c = hidden[layer], cell[layer]
            for step in range(steps):
                gates = torch.addmm(gates_in[step], h, w_hh.t())
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outputs.append(h)
            hidden[layer], cell[layer] = h, c
            x = torch.stack(outputs)
        self.state = (torch.stack(hidden), torch.stack(cell))
        return x

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] == 0:
            return x
        time_first = x.permute(2, 0, 1)
        if time_first.shape[0] < self.STEP_BY_STEP_BELOW:
            y = self._steps(time_first)
        else:
            y, self.state = self.layer.lstm(time_first, self.state)
        if self.layer.skip:
            y = y + time_first
        return y.permute(1, 2, 0)

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return template

    def count(self, n: int) -> int:
        return n


def stream_nodes(module: nn.Module) -> _Node:
    """A fresh stream over `module` (an encoder, a decoder or one of their layers)."""
    if isinstance(module, (SEANetEncoder, SEANetDecoder)):
        return stream_nodes(module.model)
    if isinstance(module, nn.Sequential):
        return _Sequence([stream_nodes(m) for m in module])
    if isinstance(module, SEANetResnetBlock):
        return _Residual(stream_nodes(module.shortcut), stream_nodes(module.block))
    if isinstance(module, StreamableConv1d):
        return _Conv(module)
    if isinstance(module, StreamableConvTranspose1d):
        return _ConvTranspose(module)
    if isinstance(module, StreamableLSTM):
        return _LSTM(module)
    if isinstance(module, (nn.ELU, nn.Identity)):
        return _Pointwise(module)
    raise TypeError(f"{type(module).__name__} has no streaming implementation")


class _Stream:
    """What the encoder and decoder streams share: one model, inputs checked against the
    first push, closed once flushed."""

    def __init__(self, model: EncodecModel) -> None:
        check_streamable(model)
        self.model = model
        self.template: torch.Tensor | None = None  # empty first input: batch, channels, dtype
        self.closed = False

    def _accept(self, x: torch.Tensor, what: str) -> None:
        if self.closed:
            raise RuntimeError(f"this {what} stream was flushed or closed; open a new one")
        if x.dim() != 3:
            raise ValueError(f"{what} chunk must be 3-D, got shape {tuple(x.shape)}")
        if self.template is None:
            self.template = x[..., :0]
        elif x.shape[:2] != self.template.shape[:2]:
            raise ValueError(
                f"{what} chunk of shape {tuple(x.shape)} does not continue the stream's "
                f"[batch, channels] = {list(self.template.shape[:2])}"
            )

    def _check_flush(self, what: str) -> torch.Tensor:
        if self.closed:
            raise RuntimeError(f"this {what} stream was already flushed")
        if self.template is None:
            raise ValueError(
                f"nothing was pushed into this {what} stream, so there is nothing to flush"
            )
        self.closed = True
        return self.template


class StreamingEncoder(_Stream):
    """Audio chunks [batch, channels, samples] of any length → codes [batch, n_q, frames].

    Args:
        model: a causal `EncodecModel` (`check_streamable`).
        bandwidth: kbps, one of the model's `target_bandwidths` (None: all codebooks).
    """

    def __init__(self, model: EncodecModel, bandwidth: float | None = None) -> None:
        super().__init__(model)
        self.n_q = model.num_codebooks(bandwidth)
        self.nodes = stream_nodes(model.encoder)
        self.samples_received = 0
        self.frames_emitted = 0

    def _codes(self, latent: torch.Tensor) -> torch.Tensor:
        self.frames_emitted += latent.shape[-1]
        if latent.shape[-1] == 0:
            return torch.zeros(latent.shape[0], self.n_q, 0, dtype=torch.long, device=latent.device)
        return self.model.quantizer.encode(latent, self.n_q).transpose(0, 1)

    @torch.inference_mode()
    def push(self, chunk: torch.Tensor) -> torch.Tensor:
        """The codes of every frame this chunk completes (possibly none)."""
        self._accept(chunk, "audio")
        if chunk.shape[1] != self.model.channels:
            raise ValueError(
                f"audio chunk has {chunk.shape[1]} channel(s) but the model expects "
                f"{self.model.channels}"
            )
        if not bool(torch.isfinite(chunk).all()):
            raise ValueError("audio chunk contains NaN or infinite samples")
        self.samples_received += chunk.shape[-1]
        return self._codes(self.nodes.push(chunk))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of the stream: the codes held back, the partial last frame included."""
        return self._codes(self.nodes.flush(self._check_flush("audio")))


class StreamingDecoder(_Stream):
    """Codes [batch, n_q, frames] of any number of frames → audio [batch, channels, samples]."""

    def __init__(self, model: EncodecModel) -> None:
        super().__init__(model)
        self.nodes = stream_nodes(model.decoder)
        self.latent_template: torch.Tensor | None = None

    @torch.inference_mode()
    def push(self, codes: torch.Tensor) -> torch.Tensor:
        """The audio samples these codes make final (possibly none)."""
        self._accept(codes, "codes")
        if not 1 <= codes.shape[1] <= self.model.quantizer.n_q:
            raise ValueError(
                f"codes have {codes.shape[1]} codebooks; this model has 1 to "
                f"{self.model.quantizer.n_q}"
            )
        if codes.shape[-1] == 0:
            latent = codes.new_zeros(codes.shape[0], self.model.quantizer.dimension, 0).float()
        else:
            latent = self.model.quantizer.decode(codes.transpose(0, 1))
        if self.latent_template is None:
            self.latent_template = latent[..., :0]
        return self.nodes.push(latent)

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of the stream: the audio held back (none for the official models)."""
        self._check_flush("codes")
        return self.nodes.flush(self.latent_template)


@dataclass(frozen=True)
class StreamingLatency:
    """How long a stream makes its user wait.

    Attributes:
        frame_samples: hop length; the steady-state algorithmic latency in samples (a code
            frame needs its last sample; the decoder adds none).
        frame_ms: the same in milliseconds (13.3 ms at 24 kHz, the paper's figure).
        first_codes_samples: samples pushed before the first code frame comes out (start-up:
            left reflect padding waits for the samples it mirrors).
        first_audio_frames: code frames pushed into a decoder before its first audio comes out.
        first_audio_ms: from the first input sample to the first decoded sample, encoder and
            decoder streams chained.
    """

    frame_samples: int
    frame_ms: float
    first_codes_samples: int
    first_audio_frames: int
    first_audio_ms: float


def _first_input_giving(node: _Node, outputs: int) -> int:
    """The fewest inputs after which `node` has emitted `outputs` outputs (binary search)."""
    high = 1
    while node.count(high) < outputs:
        high *= 2
    low = high // 2
    while low + 1 < high:
        middle = (low + high) // 2
        low, high = (low, middle) if node.count(middle) >= outputs else (middle, high)
    return high


def streaming_latency(model: EncodecModel) -> StreamingLatency:
    """The latency of a stream over `model`, computed from its layers' sizes and padding."""
    check_streamable(model)
    encoder, decoder = stream_nodes(model.encoder), stream_nodes(model.decoder)
    first_audio_frames = _first_input_giving(decoder, 1)
    # The first decoded sample needs `first_audio_frames` code frames out of the encoder.
    first_audio_samples = _first_input_giving(encoder, first_audio_frames)
    to_ms = 1000.0 / model.sample_rate
    return StreamingLatency(
        frame_samples=model.hop_length,
        frame_ms=model.hop_length * to_ms,
        first_codes_samples=_first_input_giving(encoder, 1),
        first_audio_frames=first_audio_frames,
        first_audio_ms=first_audio_samples * to_ms,
    )
