"""The entropy model over a batch of independent streams in float64: one time step for all of
them (decoding), or every step at once from known inputs (encoding), with the same results
bit for bit, so encoder and decoder build the same distributions by construction.

Decoding must run the model step by step (each step needs the codes just decoded), and a
step of the paper's model is small (5 layers, 200 channels): in PyTorch its time goes to the
per-operation overhead, not to the arithmetic. Here a step is one Numba-compiled call on
weights converted once (float32 as trained, contiguous, stacked per layer; float64
arithmetic), with the keys and values of the past steps in preallocated rings and the
matrix products by `small_matmul`. The encoder knows every code, so it runs each layer over
all steps of all streams at once (one pass over the weights instead of one per step): every
row goes through the same code as in a step (the matrix kernel's result for a row depends on
that row alone; the rest has no reassociation), and each query sums over its keys in the
order of the decoder's ring, so the logits are the decoder's, bit for bit (tested). Between
machines the float64 arithmetic and the 1/64-bit grid of `probabilities` cover what may
still differ (the matrix products' summation order follows the CPU's vector width).

The maths is `encodec_train.model.lm.EntropyModel`'s (the official `LMModel`'s): each stream
starts from one zero input whose keys and values (the projections' biases) the first
`past_context` steps attend to; step t sees the steps t − past_context … t. Compiled on
first use and cached beside this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from numba import njit

from encodec_train.compression.small_matmul import padded, rows_by_four
from encodec_train.model.lm import EntropyModel

LAYER_NORM_EPS = 1e-5


@dataclass
class StepState:
    """Where a batch of streams stands: per layer the keys ([layers, batch, heads, head dim,
    capacity]) and values ([layers, batch, heads, capacity, head dim]) of the visible steps
    in rings (slot (t + 1) % capacity holds step t; slot 0 first the zero input), and the
    number of steps done."""

    keys: np.ndarray
    values: np.ndarray
    step: int


@njit(cache=True)
def _layer_norm(x, weight, bias):  # pragma: no cover - compiled
    """In place over the last axis of x [rows, dim] (biased variance, as torch)."""
    rows, dim = x.shape
    for r in range(rows):
        mean = 0.0
        for d in range(dim):
            mean += x[r, d]
        mean /= dim
        variance = 0.0
        for d in range(dim):
            centred = x[r, d] - mean
            variance += centred * centred
        scale = math.sqrt(variance / dim + LAYER_NORM_EPS)
        for d in range(dim):
            x[r, d] = (x[r, d] - mean) / scale * weight[d] + bias[d]


@njit(cache=True)
def _embed(inputs, positions, embeddings, norm_in, periods, x):  # pragma: no cover - compiled
    """x [≥ rows, dim] (zeros) = the model's input of rows with `inputs` [rows, K] at steps
    `positions` [rows]: summed embeddings, LayerNorm, sinusoidal positions."""
    rows, levels = inputs.shape
    dim = embeddings.shape[2]
    for r in range(rows):
        for k in range(levels):
            for d in range(dim):
                x[r, d] += embeddings[k, inputs[r, k], d]
    _layer_norm(x, norm_in[0], norm_in[1])
    half = dim // 2
    for r in range(rows):
        for d in range(half):
            phase = positions[r] / periods[d]
            x[r, d] += math.cos(phase)
            x[r, half + d] += math.sin(phase)


@njit(cache=True)
def _attend(qkv, row, head, keys, values, visible, scores, accumulated, out):  # pragma: no cover
    """Head `head` of row `row`: its query (in qkv [rows, 3 × dim]) over the first `visible`
    slots of keys [head dim, slots] and values [slots, head dim], into out[row]."""
    head_dim = keys.shape[0]
    base = head * head_dim
    scale = 1.0 / math.sqrt(head_dim)
    scores[:visible] = 0.0
    for d in range(head_dim):
        query, row_keys = qkv[row, base + d], keys[d]
        for s in range(visible):
            scores[s] += query * row_keys[s]
    largest = scores[:visible].max()
    total = 0.0
    for s in range(visible):
        scores[s] = math.exp((scores[s] - largest) * scale)
        total += scores[s]
    accumulated[:] = 0.0
    for s in range(visible):
        weight, row_values = scores[s], values[s]
        for d in range(head_dim):
            accumulated[d] += weight * row_values[d]
    for d in range(head_dim):
        out[row, base + d] = accumulated[d] / total


@njit(cache=True)
def _feed_forward(x, attended, layer, maps, norms):  # pragma: no cover - compiled
    """The rest of layer `layer` after attention, in place on x [rows, dim]: output
    projection, residual, LayerNorm, GELU feed-forward, residual, LayerNorm."""
    _, _, out_w, out_b, ff1_w, ff1_b, ff2_w, ff2_b = maps
    projected = np.empty_like(x)
    rows_by_four(attended, out_w[layer], out_b[layer], projected)
    x += projected
    _layer_norm(x, norms[layer, 0], norms[layer, 1])
    hidden = np.empty((x.shape[0], ff1_w.shape[1]))
    rows_by_four(x, ff1_w[layer], ff1_b[layer], hidden)
    for r in range(hidden.shape[0]):
        for j in range(hidden.shape[1]):
            value = hidden[r, j]
            hidden[r, j] = 0.5 * value * (1.0 + math.erf(value / math.sqrt(2.0)))  # exact GELU
    rows_by_four(hidden, ff2_w[layer], ff2_b[layer], projected)
    x += projected
    _layer_norm(x, norms[layer, 2], norms[layer, 3])


@njit(cache=True)
def _step(inputs, t, embeddings, norm_in, periods, maps, norms, keys, values):  # pragma: no cover
    """The last layer's output [padded batch, dim] of step t of each stream (rows beyond the
    batch are padding), storing the step's keys and values in the rings."""
    batch, heads, head_dim, capacity = keys.shape[1:]
    dim = embeddings.shape[2]
    x = np.zeros((padded(batch), dim))
    _embed(inputs, np.full(batch, t), embeddings, norm_in, periods, x)
    slot, visible = (t + 1) % capacity, min(t + 2, capacity)
    qkv = np.empty((x.shape[0], 3 * dim))
    attended = np.zeros_like(x)
    scores, accumulated = np.empty(capacity), np.empty(head_dim)
    for layer in range(keys.shape[0]):
        rows_by_four(x, maps[0][layer], maps[1][layer], qkv)
        for b in range(batch):
            for h in range(heads):
                layer_keys, layer_values = keys[layer, b, h], values[layer, b, h]
                for d in range(head_dim):
                    layer_keys[d, slot] = qkv[b, dim + h * head_dim + d]
                    layer_values[slot, d] = qkv[b, 2 * dim + h * head_dim + d]
                _attend(qkv, b, h, layer_keys, layer_values, visible, scores, accumulated, attended)
        _feed_forward(x, attended, layer, maps, norms)
    return x


@njit(cache=True)
def _all_steps(
    inputs, embeddings, norm_in, periods, maps, norms, bias_kv, heads
):  # pragma: no cover
    """The last layer's output [padded(streams × steps), dim] (row s × steps + t: stream s at
    step t) of every step of streams with `inputs` [streams, K, steps], for steps ≤ the
    context: the keys of a stream sit in the slots of the decoder's ring (step t in slot
    t + 1, no wrap), so each query sums over them in the decoder's order."""
    streams, levels, steps = inputs.shape
    dim = embeddings.shape[2]
    head_dim = dim // heads
    rows = streams * steps
    flat = np.empty((rows, levels), dtype=inputs.dtype)
    positions = np.empty(rows, dtype=np.int64)
    for s in range(streams):
        for t in range(steps):
            positions[s * steps + t] = t
            for k in range(levels):
                flat[s * steps + t, k] = inputs[s, k, t]
    x = np.zeros((padded(rows), dim))
    _embed(flat, positions, embeddings, norm_in, periods, x)
    qkv = np.empty((x.shape[0], 3 * dim))
    attended = np.zeros_like(x)
    scores, accumulated = np.empty(steps + 1), np.empty(head_dim)
    layer_keys = np.empty((heads, head_dim, steps + 1))
    layer_values = np.empty((heads, steps + 1, head_dim))
    for layer in range(norms.shape[0]):
        rows_by_four(x, maps[0][layer], maps[1][layer], qkv)
        for s in range(streams):
            for h in range(heads):
                for d in range(head_dim):
                    layer_keys[h, d, 0] = bias_kv[layer, 0, h, d]
                    layer_values[h, 0, d] = bias_kv[layer, 1, h, d]
                    for t in range(steps):
                        layer_keys[h, d, t + 1] = qkv[s * steps + t, dim + h * head_dim + d]
                        layer_values[h, t + 1, d] = qkv[s * steps + t, 2 * dim + h * head_dim + d]
            for t in range(steps):
                for h in range(heads):
                    _attend(
                        qkv,
                        s * steps + t,
                        h,
                        layer_keys[h],
                        layer_values[h],
                        t + 2,
                        scores,
                        accumulated,
                        attended,
                    )
        _feed_forward(x, attended, layer, maps, norms)
    return x


class StepModel:
    """A copy of `lm` (an `EntropyModel`) for a batch of streams: `initial_state`, then
    `step` once per time step; or `all_logits` of every step from known inputs. Weights are
    kept in float32 (the model's precision; a float64 model is rounded to it) and the
    arithmetic is float64."""

    def __init__(self, lm: EntropyModel) -> None:
        state = {name: tensor.detach().cpu() for name, tensor in lm.state_dict().items()}
        layers = range(len(lm.transformer.layers))

        def stacked(names: list[str], dtype: torch.dtype) -> np.ndarray:
            return np.ascontiguousarray(torch.stack([state[n] for n in names]).to(dtype).numpy())

        def per_layer(name: str, dtype: torch.dtype = torch.float64) -> np.ndarray:
            return stacked([f"transformer.layers.{i}.{name}" for i in layers], dtype)

        self.n_q, self.codebook_size, self.dim = lm.n_q, lm.codebook_size, lm.dim
        self.num_heads = lm.transformer.layers[0].self_attn.num_heads
        self.past_context = lm.transformer.past_context
        self.embeddings = stacked([f"emb.{k}.weight" for k in range(lm.n_q)], torch.float64)
        norm_in = ["transformer.norm_in.weight", "transformer.norm_in.bias"]
        self.norm_in = stacked(norm_in, torch.float64)
        maps = []  # (weight [layers, out, in] float32, bias [layers, out]) of each linear map
        for name in ("self_attn.in_proj_", "self_attn.out_proj.", "linear1.", "linear2."):
            maps += [per_layer(f"{name}weight", torch.float32), per_layer(f"{name}bias")]
        self.maps = tuple(maps)
        self.norms = np.stack(
            [per_layer(f"norm{n}.{p}") for n in (1, 2) for p in ("weight", "bias")], axis=1
        )  # [layers, 4, dim]: norm1 weight, bias, norm2 weight, bias
        head_dim = self.dim // self.num_heads
        # The keys and values of the zero input (in_proj_bias): [layers, 2, heads, head dim].
        self.bias_kv = self.maps[1].reshape(len(layers), 3, self.num_heads, head_dim)[:, 1:].copy()
        # All heads as one map: the first K codebooks' heads are its first K × card rows.
        heads = range(lm.n_q)
        self.heads_w = stacked([f"linears.{k}.weight" for k in heads], torch.float32)
        self.heads_w = self.heads_w.reshape(-1, self.dim)
        self.heads_b = stacked([f"linears.{k}.bias" for k in heads], torch.float64).reshape(-1)
        half = self.dim // 2
        max_period = lm.transformer.max_period
        self.periods = max_period ** (np.arange(half, dtype=np.float64) / (half - 1))

    def initial_state(self, batch: int, steps: int) -> StepState:
        """The state of `batch` streams at their start, with room for `steps` steps: every
        layer has seen one zero input."""
        capacity = min(self.past_context, steps) + 1
        layers, heads, head_dim = len(self.norms), self.num_heads, self.dim // self.num_heads
        keys = np.zeros((layers, batch, heads, head_dim, capacity))
        values = np.zeros((layers, batch, heads, capacity, head_dim))
        keys[..., 0] = self.bias_kv[:, None, 0]
        values[:, :, :, 0] = self.bias_kv[:, None, 1]
        return StepState(keys, values, 0)

    def _arrays(self) -> tuple:
        """The weights as the compiled functions take them."""
        return self.embeddings, self.norm_in, self.periods, self.maps, self.norms

    def _check_levels(self, levels: int) -> None:
        if levels > self.n_q:
            raise ValueError(f"{levels} codebooks given; this entropy model predicts {self.n_q}")

    def logits(self, x: np.ndarray, rows: int, levels: int) -> np.ndarray:
        """float64 logits [rows, levels, codebook_size] of the first `rows` rows of the last
        layer's output x [padded rows, dim] (C order)."""
        used = levels * self.codebook_size
        logits = np.empty((x.shape[0], used))
        rows_by_four(x, self.heads_w[:used], self.heads_b[:used], logits)
        return logits[:rows].reshape(rows, levels, self.codebook_size)

    def step(self, inputs: np.ndarray, state: StepState) -> np.ndarray:
        """float64 logits [batch, K, codebook_size] of the next step of each stream, from
        `inputs` [batch, K] (int: 1 + the previous step's code per codebook, 0 at the first
        step); advances `state`."""
        batch, levels = inputs.shape
        self._check_levels(levels)
        t, capacity = state.step, state.keys.shape[-1]
        if t >= capacity - 1 and capacity <= self.past_context:
            raise ValueError(f"the state has room for {capacity - 1} steps; this is step {t + 1}")
        inputs = np.ascontiguousarray(inputs, dtype=np.int64)
        x = _step(inputs, t, *self._arrays(), state.keys, state.values)
        state.step = t + 1
        return self.logits(x, batch, levels)

    def all_steps(self, inputs: np.ndarray) -> np.ndarray:
        """The last layer's output [padded(streams × steps), dim] of every step of streams
        from their start (row s × steps + t: stream s at step t; for `logits`), from `inputs`
        [streams, K, steps] as `step` takes them, at most `past_context` steps: bit for bit
        what `step` computes for each, in one pass over the weights per layer."""
        streams, levels, steps = inputs.shape
        self._check_levels(levels)
        if steps > self.past_context:
            raise ValueError(f"{steps} steps at once: at most the context, {self.past_context}")
        inputs = np.ascontiguousarray(inputs, dtype=np.int64)
        return _all_steps(inputs, *self._arrays(), self.bias_kv, self.num_heads)
