"""The entropy model one time step at a time for a batch of independent streams, in float64:
the one function that gives the range coder its distributions, when encoding and when
decoding.

Decoding must run the model step by step (each step needs the codes just decoded), and a
step of the paper's model is small (5 layers, 200 channels): in PyTorch its time goes to the
per-operation overhead, not to the arithmetic. Here a step is one Numba-compiled call on
weights converted once (float32 as trained, contiguous, stacked per layer; float64
arithmetic), with the keys and values of the past steps in preallocated rings, and the
matrix products by `small_matmul`. The encoder runs this same step on the same batch of
streams, so both sides compute their logits with the same operations on the same shapes;
the float64 arithmetic and the 1/64-bit grid of `probabilities` cover what may still differ
between machines (the matrix products' summation order follows the CPU's vector width).

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

from encodec_train.compression.small_matmul import rows_by_four
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
def _attend(qkv, keys, values, slot, visible, out):  # pragma: no cover - compiled
    """Stores the keys and values of qkv [batch, 3 × dim] in the rings' `slot` and writes
    each head's attention over the `visible` slots to out [batch, dim]."""
    batch, heads, head_dim, _ = keys.shape
    dim = heads * head_dim
    scale = 1.0 / math.sqrt(head_dim)
    scores = np.empty(visible)
    accumulated = np.empty(head_dim)
    for b in range(batch):
        for h in range(heads):
            base = h * head_dim
            head_keys, head_values = keys[b, h], values[b, h]  # [head dim, cap], [cap, head dim]
            for d in range(head_dim):
                head_keys[d, slot] = qkv[b, dim + base + d]
                head_values[slot, d] = qkv[b, 2 * dim + base + d]
            scores[:] = 0.0
            for d in range(head_dim):
                query, row = qkv[b, base + d], head_keys[d]
                for s in range(visible):
                    scores[s] += query * row[s]
            largest = scores.max()
            total = 0.0
            for s in range(visible):
                scores[s] = math.exp((scores[s] - largest) * scale)
                total += scores[s]
            accumulated[:] = 0.0
            for s in range(visible):
                weight, row = scores[s], head_values[s]
                for d in range(head_dim):
                    accumulated[d] += weight * row[d]
            for d in range(head_dim):
                out[b, base + d] = accumulated[d] / total


@njit(cache=True)
def _step(  # pragma: no cover - compiled
    inputs,
    t,
    embeddings,
    norm_in,
    periods,
    qkv_w,
    qkv_b,
    out_w,
    out_b,
    ff1_w,
    ff1_b,
    ff2_w,
    ff2_b,
    norms,
    heads_w,
    heads_b,
    keys,
    values,
):
    batch, levels = inputs.shape
    dim = embeddings.shape[2]
    x = np.zeros((batch, dim))
    for b in range(batch):
        for k in range(levels):
            for d in range(dim):
                x[b, d] += embeddings[k, inputs[b, k], d]
    _layer_norm(x, norm_in[0], norm_in[1])
    half = dim // 2
    for d in range(half):
        phase = t / periods[d]
        for b in range(batch):
            x[b, d] += math.cos(phase)
            x[b, half + d] += math.sin(phase)
    capacity = keys.shape[4]
    slot, visible = (t + 1) % capacity, min(t + 2, capacity)
    qkv = np.empty((batch, 3 * dim))
    attended = np.empty((batch, dim))
    projected = np.empty((batch, dim))
    hidden = np.empty((batch, ff1_w.shape[1]))
    for layer in range(qkv_w.shape[0]):
        rows_by_four(x, qkv_w[layer], qkv_b[layer], qkv)
        _attend(qkv, keys[layer], values[layer], slot, visible, attended)
        rows_by_four(attended, out_w[layer], out_b[layer], projected)
        x += projected
        _layer_norm(x, norms[layer, 0], norms[layer, 1])
        rows_by_four(x, ff1_w[layer], ff1_b[layer], hidden)
        for b in range(batch):
            for j in range(hidden.shape[1]):
                value = hidden[b, j]
                hidden[b, j] = 0.5 * value * (1.0 + math.erf(value / math.sqrt(2.0)))
        rows_by_four(hidden, ff2_w[layer], ff2_b[layer], projected)
        x += projected
        _layer_norm(x, norms[layer, 2], norms[layer, 3])
    logits = np.empty((batch, heads_w.shape[0]))
    rows_by_four(x, heads_w, heads_b, logits)
    return logits


class StepModel:
    """A copy of `lm` (an `EntropyModel`) that runs one step for a batch of streams:
    `initial_state`, then `step` once per time step. Weights are kept in float32 (the
    model's precision; a float64 model is rounded to it) and the arithmetic is float64."""

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
        self.norm_in = stacked(
            ["transformer.norm_in.weight", "transformer.norm_in.bias"], torch.float64
        )
        self.linears = []  # (weight [layers, out, in] float32, bias [layers, out]) per map
        for name in ("self_attn.in_proj_", "self_attn.out_proj.", "linear1.", "linear2."):
            self.linears += [per_layer(f"{name}weight", torch.float32), per_layer(f"{name}bias")]
        self.norms = np.stack(
            [per_layer(f"norm{n}.{p}") for n in (1, 2) for p in ("weight", "bias")], axis=1
        )  # [layers, 4, dim]: norm1 weight, bias, norm2 weight, bias
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
        heads, head_dim = self.num_heads, self.dim // self.num_heads
        layers = len(self.norms)
        keys = np.zeros((layers, batch, heads, head_dim, capacity))
        values = np.zeros((layers, batch, heads, capacity, head_dim))
        bias = self.linears[1].reshape(layers, 3, heads, head_dim)  # in_proj_bias: q, k, v
        keys[..., 0] = bias[:, None, 1]
        values[:, :, :, 0] = bias[:, None, 2]
        return StepState(keys, values, 0)

    def step(self, inputs: np.ndarray, state: StepState) -> np.ndarray:
        """float64 logits [batch, K, codebook_size] of the next step of each stream, from
        `inputs` [batch, K] (int: 1 + the previous step's code per codebook, 0 at the first
        step); advances `state`."""
        batch, levels = inputs.shape
        if levels > self.n_q:
            raise ValueError(f"{levels} codebooks given; this entropy model predicts {self.n_q}")
        t, capacity = state.step, state.keys.shape[-1]
        if t >= capacity - 1 and capacity <= self.past_context:
            raise ValueError(f"the state has room for {capacity - 1} steps; this is step {t + 1}")
        used = levels * self.codebook_size
        logits = _step(
            np.ascontiguousarray(inputs, dtype=np.int64),
            t,
            self.embeddings,
            self.norm_in,
            self.periods,
            *self.linears,
            self.norms,
            self.heads_w[:used],
            self.heads_b[:used],
            state.keys,
            state.values,
        )
        state.step = t + 1
        return logits.reshape(batch, levels, self.codebook_size)
