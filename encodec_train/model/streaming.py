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

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from types import ModuleType
from typing import TYPE_CHECKING, TypeVar

import numpy as np
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
    from encodec_train.model.stream_kernels import CodebookScreen

Prepared = TypeVar("Prepared")

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


def _prepared(module: nn.Module, build: Callable[[], Prepared]) -> Prepared:
    """`build()`: `module`'s weights laid out for chunk-sized matrix products, computed once
    and shared by every stream over `module` until one of its parameters or buffers changes
    (another tensor, or an in-place update such as an optimizer step)."""
    tensors = [*module.parameters(), *module.buffers()]
    version = tuple((t.data_ptr(), t._version) for t in tensors)
    cached = _PREPARED.get(module)
    if cached is None or cached[0] != version:
        with torch.no_grad():
            cached = (version, build())
        _PREPARED[module] = cached
    return cached[1]


_PREPARED: weakref.WeakKeyDictionary[nn.Module, tuple] = weakref.WeakKeyDictionary()

_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


@cache
def _kernels() -> ModuleType:
    """`stream_kernels`, imported on first use so that importing the model does not import
    Numba. Called when a stream is opened: compiling the kernels (~6 s), or loading them
    from Numba's cache (~0.5 s), happens there, not in the first push."""
    from encodec_train.model import stream_kernels

    stream_kernels.warm_up()
    return stream_kernels


def _on_kernels(x: torch.Tensor) -> bool:
    """Whether `x` is what the Numba kernels take (CPU float32); others go through PyTorch."""
    return x.dtype == torch.float32 and x.device.type == "cpu"


@dataclass(frozen=True)
class _Linear:
    """x [rows, in] → x·Wᵀ + bias, for the rows a push brings.

    A frame-rate layer's push brings one or two rows, and its product only has to read the
    weight: `few_rows` reads each weight row once for both, at the speed of a sum over the
    weight (cold 4 MB weight: 127 µs for one row, 153 µs for two, a sum 123 µs; oneDNN's
    packed product 142 / 170 µs, MKL's `addmm` 194 / 295 µs; `F.conv1d` on one or two
    windows several times slower; on small weights the kernel's call costs less than
    `addmm`'s). More rows go to oneDNN with the weight packed once in
    its blocked layout (large weights) or to `addmm` with it transposed (small ones, whose
    fixed cost is lower)."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    packed: bool
    in_features: int
    out_features: int
    rows_weight: np.ndarray | None  # [out, in] for `few_rows` (CPU float32); None: not there
    rows_bias: np.ndarray | None

    PACK_FROM = 16_384  # weights with at least this many elements are packed
    PACK_ROWS = 16  # the rows oneDNN lays the packing out for: as fast at 1–2 rows as a
    # layout for 1 or 2, and 2× faster at the 12 rows of a 600 Hz layer than one for 1 row
    FEW_ROWS = 2

    @staticmethod
    def of(weight: torch.Tensor, bias: torch.Tensor | None, pack: bool = True) -> _Linear:
        """From `weight` [out, in] (and `bias` [out]); `pack=False` keeps even a large
        weight for `addmm` when more than `FEW_ROWS` rows come."""
        out_features, in_features = weight.shape
        cpu_float = weight.dtype == torch.float32 and weight.device.type == "cpu"
        large = weight.numel() >= _Linear.PACK_FROM
        rows_weight = rows_bias = None
        if cpu_float:
            _kernels()
            rows_weight = weight.detach().contiguous().numpy()
            rows_bias = (weight.new_zeros(out_features) if bias is None else bias).detach().numpy()
        if _ONEDNN and cpu_float and large and pack:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight.contiguous(), _Linear.PACK_ROWS)
            return _Linear(packed, bias, True, in_features, out_features, rows_weight, rows_bias)
        transposed = weight.t().contiguous()
        return _Linear(transposed, bias, False, in_features, out_features, rows_weight, rows_bias)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.rows_weight is not None and x.shape[0] <= _Linear.FEW_ROWS:
            out = x.new_empty(x.shape[0], self.out_features)
            rows = x.contiguous().numpy()
            _kernels().few_rows(rows, self.rows_weight, self.rows_bias, out.numpy())
            return out
        if self.packed:
            return torch.ops.mkldnn._linear_pointwise(x, self.weight, self.bias, "none", [], "")
        if self.bias is None:
            return torch.mm(x, self.weight)
        return torch.addmm(self.bias, x, self.weight)


class _Node:
    """One layer of a stream: `push` input columns, get the output columns that are final.

    Streams work time-major, on [batch, time, channels]: a window of a convolution is then a
    contiguous run of memory, and every layer is one matrix product of a few rows against
    weights prepared once (`_prepared`) in the layout those products read fastest."""

    def push(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        """The outputs held back until the input is known to end. `template` is an empty
        input ([batch, 0, channels]) that carries the batch size, dtype and device."""
        raise NotImplementedError

    def count(self, n: int) -> int:
        """Outputs emitted, before `flush`, once `n` inputs have been pushed."""
        raise NotImplementedError


class _Pointwise(_Node):
    """Identity: each column on its own, nothing held back."""

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return template

    def count(self, n: int) -> int:
        return n


class _ELU(_Pointwise):
    """ELU (`nn.ELU` or the inference copy's): one kernel call on CPU float32, where
    PyTorch takes four operations (`InferenceELU`) or a slow `expm1` (`F.elu`)."""

    def __init__(self, module: nn.ELU) -> None:
        self.module = module
        self.alpha = np.float32(module.alpha)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if not _on_kernels(x):
            return self.module(x)
        x = x.contiguous()
        out = torch.empty_like(x)
        _kernels().elu(x.view(-1).numpy(), self.alpha, out.view(-1).numpy())
        return out


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
            out = torch.cat([node.push(out), node.flush(out[:, :0])], dim=1)
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
        if self.ahead is None and a.shape[1] == b.shape[1]:  # the steady state
            return a + b
        if self.ahead is not None:
            if self.ahead_is_shortcut:
                a = torch.cat([self.ahead, a], dim=1)
            else:
                b = torch.cat([self.ahead, b], dim=1)
        n = min(a.shape[1], b.shape[1])
        self.ahead_is_shortcut = a.shape[1] > n
        longer = a if self.ahead_is_shortcut else b
        self.ahead = longer[:, n:] if longer.shape[1] > n else None
        return a[:, :n] + b[:, :n]

    def push(self, x: torch.Tensor) -> torch.Tensor:
        return self._add(self.shortcut.push(x), self.block.push(x))

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return self._add(self.shortcut.flush(template), self.block.flush(template))

    def count(self, n: int) -> int:
        return min(self.shortcut.count(n), self.block.count(n))


def _channels_first(x: torch.Tensor) -> torch.Tensor:
    return x.transpose(1, 2)


_time_major = _channels_first  # the same swap of the last two axes, the other way round


class _Conv(_Node):
    """Causal `StreamableConv1d`: the left padding once the first inputs allow it, then the
    inputs a window still needs kept between pushes; the end padding at `flush`.

    The windows of a push are gathered into rows ([windows, kernel·in]) and multiplied by the
    weight laid out as [kernel·in, out]: one matrix product, which reads a large weight
    (a frame-rate layer's) at the memory's speed, where `F.conv1d` on one or two windows ran
    several times slower. The layer's norm is the identity in every causal model."""

    def __init__(self, layer: StreamableConv1d) -> None:
        self.layer = layer
        conv = layer.conv.conv
        self.kernel, self.stride = layer.effective_kernel, layer.stride
        self.dilation = conv.dilation[0]
        self.out_channels = conv.out_channels
        self.padding = layer.padding_total
        self.start_needs = _START_NEEDS[layer.pad_mode](self.padding)
        if layer.pad_mode == "reflect" and self.stride > 1 and self.padding < self.stride:
            # The end padding mirrors up to stride − 1 inputs; the kept inputs must hold them.
            raise ValueError(
                f"kernel {layer.kernel_size} with stride {self.stride}: reflect padding at the "
                "end needs more inputs than a stream keeps"
            )
        if conv.groups != 1:
            raise ValueError(f"grouped convolutions (groups={conv.groups}) do not stream")
        self.linear = _conv_linear(conv)
        self.buffer: torch.Tensor | None = None
        self.started = False
        self.received = 0

    def _empty(self, like: torch.Tensor) -> torch.Tensor:
        return like.new_zeros(like.shape[0], 0, self.out_channels)

    def _windows(self, padded: torch.Tensor) -> torch.Tensor:
        """Every whole window of `padded`; keep what the next window needs."""
        batch, length, _ = padded.shape
        n = (length - self.kernel) // self.stride + 1 if length >= self.kernel else 0
        self.buffer = padded[:, n * self.stride :]
        if n == 0:
            return self._empty(padded)
        windows = padded.unfold(1, self.kernel, self.stride)  # [batch, n, in, kernel]
        if self.dilation > 1:
            windows = windows[..., :: self.dilation]
        rows = windows.transpose(2, 3).reshape(batch * n, -1)  # [batch·n, kernel·in]
        return self.linear(rows).view(batch, n, -1)

    def push(self, x: torch.Tensor) -> torch.Tensor:
        self.received += x.shape[1]
        if self.buffer is not None and self.buffer.shape[1]:
            x = torch.cat([self.buffer, x], dim=1)
        if not self.started:
            if x.shape[1] < self.start_needs:
                self.buffer = x
                return self._empty(x)
            x = _time_major(pad1d(_channels_first(x), (self.padding, 0), self.layer.pad_mode))
            self.started = True
        return self._windows(x)

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        if not self.started:
            # Too short to start: the offline layer on the whole (short) input.
            whole = template if self.buffer is None else self.buffer
            if not whole.shape[1]:
                return self._empty(whole)
            return _time_major(self.layer(_channels_first(whole)))
        extra = extra_padding_for_conv1d(self.received, self.kernel, self.stride, self.padding)
        end = pad1d(_channels_first(self.buffer), (0, extra), self.layer.pad_mode)
        return self._windows(_time_major(end))

    def count(self, n: int) -> int:
        padded = n + self.padding
        if n < self.start_needs or padded < self.kernel:
            return 0
        return (padded - self.kernel) // self.stride + 1


def _conv_linear(conv: nn.Conv1d) -> _Linear:
    """The product of a window's rows ([kernel·in], time-major) with `conv`'s weight."""
    out_channels = conv.out_channels
    return _prepared(
        conv, lambda: _Linear.of(conv.weight.transpose(1, 2).reshape(out_channels, -1), conv.bias)
    )


class _PointwiseConv(_Node):
    """A 1×1 `StreamableConv1d` (a residual block's shortcut and last conv): each column on
    its own, so nothing is kept or held back and `_Conv`'s bookkeeping is skipped."""

    def __init__(self, layer: StreamableConv1d) -> None:
        self.linear = _conv_linear(layer.conv.conv)
        self.out_channels = layer.conv.conv.out_channels

    def push(self, x: torch.Tensor) -> torch.Tensor:
        batch, n, channels = x.shape
        if n == 0:
            return x.new_zeros(batch, 0, self.out_channels)
        return self.linear(x.reshape(batch * n, channels)).view(batch, n, -1)

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return template.new_zeros(template.shape[0], 0, self.out_channels)

    def count(self, n: int) -> int:
        return n


def _window_linear(conv: nn.ConvTranspose1d, kernel: int) -> _Linear:
    """An input frame's window of a transposed conv, as [kernel·out] time-major values (the
    weight [in, out, k] zero-padded to `kernel` taps), without the bias."""
    weight = F.pad(conv.weight, (0, kernel - conv.weight.shape[-1]))
    return _Linear.of(weight.permute(2, 1, 0).reshape(-1, conv.in_channels), None)


class _ConvTranspose(_Node):
    """Causal `StreamableConvTranspose1d`: each input frame's window overlaps the next ones
    (kernel − stride samples); those parts are kept and added to the next push's head.

    One matrix product gives every frame's window ([frames, in] × [in, kernel·out], the
    kernel zero-padded to a whole number of strides); the windows are then overlap-added
    `stride` apart. On a few frames this is up to 15× faster than CPU `conv_transpose1d`."""

    def __init__(self, layer: StreamableConvTranspose1d) -> None:
        conv = layer.convtr.convtr
        _, self.out_channels, kernel = conv.weight.shape
        self.stride = conv.stride[0]
        self.shifts = -(-kernel // self.stride)  # strides a window spans
        self.trim_left, _ = layer.trim
        self.to_drop = self.trim_left  # offline output starts trim_left samples in
        self.linear = _prepared(conv, lambda: _window_linear(conv, self.shifts * self.stride))
        self.bias = conv.bias
        self.tail: torch.Tensor | None = None  # [batch, shifts − 1, stride, out]: still summing

    def _emit(self, y: torch.Tensor) -> torch.Tensor:
        if self.to_drop:
            dropped = min(self.to_drop, y.shape[1])
            y, self.to_drop = y[:, dropped:], self.to_drop - dropped
        return y if self.bias is None else y + self.bias

    def push(self, x: torch.Tensor) -> torch.Tensor:
        batch, frames, _ = x.shape
        if frames == 0:
            return x.new_zeros(batch, 0, self.out_channels)
        shifts, stride = self.shifts, self.stride
        windows = self.linear(x.reshape(batch * frames, -1))
        windows = windows.view(batch, frames, shifts, stride, self.out_channels)
        # Output frame t sums part j of window t − j for every j (and the kept tail).
        summed = windows.new_zeros(batch, frames + shifts - 1, stride, self.out_channels)
        for shift in range(shifts):
            summed[:, shift : shift + frames] += windows[:, :, shift]
        if self.tail is not None:
            summed[:, : shifts - 1] += self.tail
        self.tail = summed[:, frames:]
        return self._emit(summed[:, :frames].reshape(batch, frames * stride, -1))

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        # Offline keeps trim_left samples of the last window's tail and trims the rest.
        if self.tail is None:
            return template.new_zeros(template.shape[0], 0, self.out_channels)
        tail = self.tail.reshape(self.tail.shape[0], -1, self.out_channels)
        return self._emit(tail[:, : self.trim_left])

    def count(self, n: int) -> int:
        return max(0, n * self.stride - self.trim_left)


class _LSTM(_Node):
    """`StreamableLSTM` with its hidden and cell state carried from push to push.

    A push of a few frames (the usual streaming case) runs the LSTM equations step by step:
    the input projection of every step in one product, then the steps, with the recurrent
    weight transposed once so that their products read it at the memory's speed and the
    gates reordered (i, f, o, g) so one sigmoid covers three. On CPU float32 one kernel call
    (`stream_kernels.lstm_steps`) runs a layer's steps, where PyTorch took ~10 operations a
    step. `nn.LSTM` on CPU goes through oneDNN, whose fixed cost per call is ~4× the work of
    a 2-frame push; longer pushes use `nn.LSTM` itself."""

    STEP_BY_STEP_BELOW = 8

    def __init__(self, layer: StreamableLSTM) -> None:
        self.layer = layer
        self.weights = _prepared(layer.lstm, lambda: _lstm_weights(layer.lstm))
        self.hidden: list[torch.Tensor] = []  # per LSTM layer, [batch, hidden]
        self.cell: list[torch.Tensor] = []

    def _layer_steps(self, layer: int, gates_in: torch.Tensor) -> torch.Tensor:
        """gates_in [batch, steps, 4·hidden] → hidden states [batch, steps, hidden]."""
        _, recurrent_linear = self.weights[layer]
        h, c = self.hidden[layer], self.cell[layer]
        if _on_kernels(gates_in) and recurrent_linear.rows_weight is not None:
            out = gates_in.new_empty(*gates_in.shape[:2], h.shape[1])
            # The state tensors are the layer's own (`push`), updated in place.
            _kernels().lstm_steps(
                gates_in.numpy(), recurrent_linear.rows_weight, h.numpy(), c.numpy(), out.numpy()
            )
            return out
        size = h.shape[1]
        outputs = []
        for step in range(gates_in.shape[1]):
            gates = recurrent_linear(h).add_(gates_in[:, step])
            ifo = gates[:, : 3 * size].sigmoid()
            c = torch.addcmul(
                ifo[:, size : 2 * size] * c, ifo[:, :size], gates[:, 3 * size :].tanh()
            )
            h = ifo[:, 2 * size :] * c.tanh()
            outputs.append(h)
        self.hidden[layer], self.cell[layer] = h, c
        return torch.stack(outputs, dim=1)

    def _steps(self, x: torch.Tensor) -> torch.Tensor:
        """x [batch, time, dim] through every layer, one time step at a time."""
        batch, steps, _ = x.shape
        for layer, (input_linear, _) in enumerate(self.weights):
            gates_in = input_linear(x.reshape(batch * steps, -1)).view(batch, steps, -1)
            x = self._layer_steps(layer, gates_in)
        return x

    def push(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 0:
            return x
        if not self.hidden:
            lstm = self.layer.lstm
            self.hidden = [
                x.new_zeros(x.shape[0], lstm.hidden_size) for _ in range(lstm.num_layers)
            ]
            self.cell = [torch.zeros_like(h) for h in self.hidden]
        if x.shape[1] < self.STEP_BY_STEP_BELOW:
            y = self._steps(x)
        else:
            state = (torch.stack(self.hidden), torch.stack(self.cell))
            y, (hidden, cell) = self.layer.lstm(x.transpose(0, 1), state)
            y = y.transpose(0, 1)
            self.hidden, self.cell = list(hidden.unbind()), list(cell.unbind())
        return y + x if self.layer.skip else y

    def flush(self, template: torch.Tensor) -> torch.Tensor:
        return template

    def count(self, n: int) -> int:
        return n


def _lstm_weights(lstm: nn.LSTM) -> tuple[tuple[_Linear, _Linear], ...]:
    """Per layer: the input projection (with both biases) and the recurrent one, gates
    reordered from PyTorch's (i, f, g, o) to (i, f, o, g)."""
    size = lstm.hidden_size
    order = torch.cat([torch.arange(2 * size), torch.arange(3 * size, 4 * size)])
    order = torch.cat([order, torch.arange(2 * size, 3 * size)])
    layers = []
    for w_ih, w_hh, b_ih, b_hh in lstm.all_weights:
        layers.append(
            (_Linear.of(w_ih[order], (b_ih + b_hh)[order]), _Linear.of(w_hh[order], None))
        )
    return tuple(layers)


def stream_nodes(module: nn.Module) -> _Node:
    """A fresh stream over `module` (an encoder, a decoder or one of their layers)."""
    if isinstance(module, (SEANetEncoder, SEANetDecoder)):
        return stream_nodes(module.model)
    if isinstance(module, nn.Sequential):
        return _Sequence([stream_nodes(m) for m in module])
    if isinstance(module, SEANetResnetBlock):
        return _Residual(stream_nodes(module.shortcut), stream_nodes(module.block))
    if isinstance(module, StreamableConv1d):
        pointwise = module.effective_kernel == 1 and module.stride == 1
        return _PointwiseConv(module) if pointwise else _Conv(module)
    if isinstance(module, StreamableConvTranspose1d):
        return _ConvTranspose(module)
    if isinstance(module, StreamableLSTM):
        return _LSTM(module)
    if isinstance(module, nn.ELU):
        return _ELU(module)
    if isinstance(module, nn.Identity):
        return _Pointwise()
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
            self.template = x[..., :0]  # [batch, channels, 0]
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


@dataclass(frozen=True)
class _Codebooks:
    """A quantizer's codebooks laid out for streams: every level's stacked [n_q, codes, dim],
    each code's ‖e‖² [n_q, codes], and on CPU float32 their 8-bit screen for the search
    kernel (`stream_kernels.codebook_screen`)."""

    stacked: torch.Tensor
    norms: torch.Tensor
    screen: CodebookScreen | None

    @staticmethod
    def of(quantizer: nn.Module) -> _Codebooks:
        stacked = torch.stack([layer._codebook.embed for layer in quantizer.vq.layers])
        norms = stacked.pow(2).sum(-1)
        screen = None
        if _on_kernels(stacked):
            screen = _kernels().codebook_screen(stacked.numpy(), norms.numpy())
        return _Codebooks(stacked, norms, screen)


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
        quantizer = model.quantizer
        codebooks = _prepared(quantizer, lambda: _Codebooks.of(quantizer))
        self.codebooks, self.norms = codebooks.stacked[: self.n_q], codebooks.norms[: self.n_q]
        self.screen = None if codebooks.screen is None else codebooks.screen.levels(self.n_q)
        self.samples_received = 0
        self.frames_emitted = 0

    def _codes(self, latent: torch.Tensor) -> torch.Tensor:
        """Residual quantisation of latent frames [batch, frames, dim], as
        `ResidualVectorQuantizer.encode`: at each level the nearest code by ‖r − e‖², here
        as argmin of ‖e‖² − 2·r·e (‖r‖², the same for every code, changes no choice; the
        float rounding of the sum differs only at exact ties). On CPU float32 one kernel
        call for every level (`stream_kernels.nearest_codes`, which reads 8-bit codebooks
        first and the float32 codes of the few candidates left), else one product a level."""
        batch, frames, dim = latent.shape
        self.frames_emitted += frames
        if frames == 0:
            return torch.zeros(batch, self.n_q, 0, dtype=torch.long, device=latent.device)
        residual = latent.reshape(batch * frames, dim)
        if self.screen is not None and _on_kernels(residual):
            codes = torch.empty(batch * frames, self.n_q, dtype=torch.long)
            residual = residual.clone()  # the kernel leaves what is left of it there
            _kernels().nearest_codes(
                residual.numpy(),
                self.codebooks.numpy(),
                self.norms.numpy(),
                self.screen,
                codes.numpy(),
            )
        else:
            levels = []
            for embed, norm in zip(self.codebooks, self.norms, strict=True):
                level = torch.addmm(norm, residual, embed.t(), alpha=-2).argmin(1)
                residual = residual - embed[level]
                levels.append(level)
            codes = torch.stack(levels, dim=1)
        return codes.view(batch, frames, self.n_q).transpose(1, 2)

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
        return self._codes(self.nodes.push(_time_major(chunk)))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of the stream: the codes held back, the partial last frame included."""
        return self._codes(self.nodes.flush(_time_major(self._check_flush("audio"))))


class StreamingDecoder(_Stream):
    """Codes [batch, n_q, frames] of any number of frames → audio [batch, channels, samples]."""

    def __init__(self, model: EncodecModel) -> None:
        super().__init__(model)
        self.nodes = stream_nodes(model.decoder)
        quantizer = model.quantizer
        codebooks = _prepared(quantizer, lambda: _Codebooks.of(quantizer))
        self.codebooks = codebooks.stacked.flatten(0, 1)  # [n_q · codes, dim]
        self.offsets = torch.arange(quantizer.n_q)[:, None] * quantizer.codebook_size
        self.latent_template: torch.Tensor | None = None

    def _latent(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes [batch, n_q, frames] → latent [batch, frames, dim]: the sum of each level's
        codeword, as `ResidualVectorQuantizer.decode`, in one lookup in the stacked
        codebooks."""
        size = self.model.quantizer.codebook_size
        low, high = torch.aminmax(codes)
        if low < 0 or high >= size:
            raise ValueError(f"codes must lie in [0, {size}), got values from {low} to {high}")
        rows = codes + self.offsets[: codes.shape[1]].to(codes.device)
        return F.embedding(rows.transpose(1, 2), self.codebooks).sum(2)

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
            latent = codes.new_zeros(codes.shape[0], 0, self.model.quantizer.dimension).float()
        else:
            latent = self._latent(codes)
        if self.latent_template is None:
            self.latent_template = latent[:, :0]
        return _channels_first(self.nodes.push(latent))

    @torch.inference_mode()
    def flush(self) -> torch.Tensor:
        """End of the stream: the audio held back (none for the official models)."""
        self._check_flush("codes")
        return _channels_first(self.nodes.flush(self.latent_template))


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
