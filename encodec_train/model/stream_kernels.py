"""Numba kernels for the chunk-sized work of a stream on CPU float32 (`streaming`).

A 20 ms push is a few hundred small operations; through PyTorch each costs a few µs of
dispatch and allocation on top of its work, more than the work for most of them. These
kernels do the layers whose work is small and whose operations are many in one call each:
the products of one or two rows, ELU, the LSTM's steps, and residual quantisation (which
reads 8-bit copies of the codebooks, a quarter of their bytes, and stays exact).

Judge a change here by whole pushes, not by a kernel alone: a stream reads tens of MB of
weights per push, and a kernel that ran faster alone (cold weights, in a loop) made whole
pushes slower more than once. Compare pushes of one stream alternating between the two
versions, in one process.

`exp` is a vectorised polynomial (Cephes' expf: range reduction by ln 2, degree-6
polynomial, the power of two built from its exponent bits), as accurate as PyTorch's
(~1 ulp; max error 6e-8 on ELU against float64) where Numba's `math.exp` calls the scalar
libm function, 5× slower than PyTorch and 20× slower than this. Imported, hence compiled or
loaded from the cache beside this file, when the first stream opens.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

_LOG2E = np.float32(1.4426950408889634)
_LN2_HIGH = np.float32(0.693145751953125)  # ln 2 in two parts: n·ln 2 exact in the first
_LN2_LOW = np.float32(1.428606765330187e-06)
_EXP_POLY = (  # Cephes expf: exp(f) ≈ 1 + f + f²·P(f) on |f| ≤ ln 2 / 2
    np.float32(1.9875691500e-4),
    np.float32(1.3981999507e-3),
    np.float32(8.3334519073e-3),
    np.float32(4.1665795894e-2),
    np.float32(1.6666665459e-1),
    np.float32(5.0000001201e-1),
)
_EXP_LOWEST, _EXP_HIGHEST = np.float32(-87.0), np.float32(88.0)  # 2^n stays a normal float32


@njit(fastmath=True, cache=True)
def _exp_parts(x, scale, highest, mantissa, exponent):  # pragma: no cover - compiled
    """exp(scale·x), clamped to [−87, highest], as mantissa[i] · exponent[i] viewed as
    float32 (its bits are the power of two). Two arrays so the loop vectorises: reading the
    power of two back as a float needs a second pass."""
    p0, p1, p2, p3, p4, p5 = _EXP_POLY
    for i in range(x.size):
        t = min(max(scale * x[i], _EXP_LOWEST), highest)
        n = np.floor(t * _LOG2E + np.float32(0.5))
        f = (t - n * _LN2_HIGH) - n * _LN2_LOW
        p = ((((p0 * f + p1) * f + p2) * f + p3) * f + p4) * f + p5
        mantissa[i] = p * f * f + f + np.float32(1.0)
        exponent[i] = (np.int32(n) + np.int32(127)) << 23


@njit(fastmath=True, cache=True)
def elu(x, alpha, out):  # pragma: no cover - compiled
    """out = ELU(x) = x for x > 0, alpha·(exp(x) − 1) otherwise; flat arrays."""
    mantissa, exponent = np.empty_like(x), np.empty(x.size, np.int32)
    _exp_parts(x, np.float32(1.0), np.float32(0.0), mantissa, exponent)
    power = exponent.view(np.float32)
    for i in range(x.size):
        negative = alpha * (mantissa[i] * power[i] - np.float32(1.0))
        out[i] = x[i] if x[i] > 0 else negative


@njit(fastmath=True, cache=True)
def few_rows(x, weight, bias, out):  # pragma: no cover - compiled
    """out = x·weightᵀ + bias, each weight row read once for every row of x."""
    for j in range(weight.shape[0]):
        w = weight[j]
        for r in range(x.shape[0]):
            total = np.float32(0.0)
            for k in range(x.shape[1]):
                total += x[r, k] * w[k]
            out[r, j] = total + bias[j]


@njit(fastmath=True, cache=True)
def lstm_steps(gates_in, recurrent, hidden, cell, out):  # pragma: no cover - compiled
    """One LSTM layer over a push's steps, the state carried in place.

    gates_in [batch, steps, 4H]: the input projection with both biases, gates ordered
    (input, forget, output, cell candidate); recurrent [4H, H] in the same order; hidden and
    cell [batch, H], updated; out [batch, steps, H] the hidden state of every step.
    """
    batch, steps, four = gates_in.shape
    size = four // 4
    if recurrent.shape[0] != four or recurrent.shape[1] != size or hidden.shape[1] != size:
        # A smaller recurrent weight would leave gates unwritten, computed from garbage.
        raise ValueError("lstm_steps: recurrent must be [4H, H] and hidden [batch, H]")
    gates = np.empty((batch, four), np.float32)
    no_bias = np.zeros(four, np.float32)
    mantissa, exponent = np.empty(four, np.float32), np.empty(four, np.int32)
    power = exponent.view(np.float32)
    for step in range(steps):
        few_rows(hidden, recurrent, no_bias, gates)
        for b in range(batch):
            g = gates[b]
            g += gates_in[b, step]
            # sigmoid(v) = 1 / (1 + exp(−v)) on (i, f, o); tanh(v) = 2·sigmoid(2v) − 1 on g
            _exp_parts(g[: 3 * size], np.float32(-1.0), _EXP_HIGHEST, mantissa, exponent)
            _exp_parts(g[3 * size :], np.float32(-2.0), _EXP_HIGHEST, mantissa[3 * size :],
                       exponent[3 * size :])  # fmt: skip
            for j in range(four):
                g[j] = np.float32(1.0) / (np.float32(1.0) + mantissa[j] * power[j])
            c = cell[b]
            for j in range(size):
                candidate = np.float32(2.0) * g[3 * size + j] - np.float32(1.0)
                c[j] = g[size + j] * c[j] + g[j] * candidate
            _exp_parts(c, np.float32(-2.0), _EXP_HIGHEST, mantissa, exponent)
            h = hidden[b]
            for j in range(size):
                tanh_c = np.float32(2.0) / (np.float32(1.0) + mantissa[j] * power[j])
                h[j] = g[2 * size + j] * (tanh_c - np.float32(1.0))
                out[b, step, j] = h[j]


class CodebookScreen(NamedTuple):
    """Every level's codebook stored in 8 bits for a first, cheap pass of the nearest-code
    search (`nearest_codes`), with what bounds that pass's error. Level-major: `[:n]` of each
    field is the first n levels. Code k of a level is e = center + scale·q + δ, with q the
    int8 codes and δ the rounding left over.

    Attributes:
        center: [levels, dim], each level's mean code (float32).
        quantized: [levels, codes, dim] int8.
        scale: [levels, codes].
        base: [levels, codes], ‖e‖² − 2·center·δ.
        spread: [levels, codes], 2‖δ‖: |2(r − center)·δ| ≤ ‖r − center‖·spread.
        rounding_slope, rounding_base: [levels, codes]: both passes' float32 rounding of
            ‖e‖² − 2 r·e is below ‖r‖·rounding_slope + rounding_base.
    """

    center: np.ndarray
    quantized: np.ndarray
    scale: np.ndarray
    base: np.ndarray
    spread: np.ndarray
    rounding_slope: np.ndarray
    rounding_base: np.ndarray

    def levels(self, n: int) -> CodebookScreen:
        return CodebookScreen(*(field[:n] for field in self))


def codebook_screen(codebooks: np.ndarray, norms: np.ndarray) -> CodebookScreen:
    """The screen of codebooks [levels, codes, dim] (float32) with norms = ‖e‖² as the
    search's second pass computes them: bounds in float64, rounded up.

    Rounding: a float32 dot product of n terms errs by at most n·2⁻²⁴·Σ|aᵢbᵢ| ≤
    n·2⁻²⁴·‖a‖‖b‖, and each pass adds a few more roundings; `rounding` is 4× that."""
    rounding = 4 * (codebooks.shape[-1] + 4) * 2.0**-24
    exact = codebooks.astype(np.float64)
    center = exact.mean(1).astype(np.float32)  # [levels, dim]
    spread_out = exact - center[:, None]  # exact: differences of float32 values
    scale = np.abs(spread_out).max(-1) / 127
    scale[scale == 0] = 1.0  # all codes equal: q = 0, δ = 0
    scale = scale.astype(np.float32).astype(np.float64)
    quantized = np.clip(np.rint(spread_out / scale[..., None]), -127, 127)
    leftover = spread_out - quantized * scale[..., None]
    length = lambda a: np.linalg.norm(a, axis=-1)  # noqa: E731
    magnitudes = length(exact) + length(center)[:, None]
    magnitudes += length(spread_out) + length(leftover)
    up = 1 + 1e-4  # covers the float32 rounding of these bounds and of the search's ‖r‖
    as32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
    return CodebookScreen(
        center=center,
        quantized=np.ascontiguousarray(quantized, dtype=np.int8),
        scale=as32(scale),
        base=as32(norms - 2 * np.einsum("ld,lkd->lk", center.astype(np.float64), leftover)),
        spread=as32(2 * length(leftover) * up),
        rounding_slope=as32(2 * rounding * magnitudes * up),
        rounding_base=as32(rounding * np.abs(norms.astype(np.float64)) * up + 1e-30),
    )


@njit(fastmath=True, cache=True)
def nearest_codes(residual, codebooks, norms, screen, codes):  # pragma: no cover - compiled
    """Residual vector quantisation of residual [rows, dim] (overwritten with what is left):
    at each level the code e minimising ‖e‖² − 2·r·e (‖r − e‖² less ‖r‖², the same for
    every e; the first on ties), then r −= e. codebooks [levels, codes, dim], norms
    [levels, codes] = ‖e‖², screen: `codebook_screen(codebooks, norms)`, codes [rows,
    levels] int64, written.

    Exact in two passes. The first computes every distance from the 8-bit codes (a quarter
    of the float32 codebook's bytes) with a bound on its error: 2|(r − center)·δ| plus the
    float32 rounding of both passes. Only codes whose lowest possible distance is below the
    lowest upper bound can be the nearest (on the benchmark's codebooks ~2 of 1024 a level);
    the second pass computes their distances from the float32 codes, as a search over all
    codes would, and keeps the first of the smallest."""
    rows, dim = residual.shape
    levels, size, _ = codebooks.shape
    center, quantized, scale, base, spread, rounding_slope, rounding_base = screen
    lower = np.empty(size, np.float32)  # each code's lowest possible distance
    for level in range(levels):
        for r in range(rows):
            x = residual[r]
            along = norm = off_center = np.float32(0.0)
            for i in range(dim):
                c = center[level, i]
                along += x[i] * c
                norm += x[i] * x[i]
                off_center += (x[i] - c) * (x[i] - c)
            norm, off_center = np.sqrt(norm), np.sqrt(off_center)
            least_upper = np.float32(3.4e38)  # not inf: fastmath assumes no infinities
            for k in range(size):
                q = quantized[level, k]
                dot = np.float32(0.0)
                for i in range(dim):
                    dot += x[i] * np.float32(q[i])
                approximate = base[level, k] - np.float32(2.0) * (along + scale[level, k] * dot)
                bound = off_center * spread[level, k] + norm * rounding_slope[level, k]
                bound += rounding_base[level, k]
                lower[k] = approximate - bound
                least_upper = min(least_upper, approximate + bound)
            best = np.float32(3.4e38)
            codes[r, level] = 0  # the first code if every distance overflows
            for k in range(size):
                if lower[k] <= least_upper:
                    e = codebooks[level, k]
                    dot = np.float32(0.0)
                    for i in range(dim):
                        dot += x[i] * e[i]
                    distance = norms[level, k] - np.float32(2.0) * dot
                    if distance < best:
                        best = distance
                        codes[r, level] = k
            x -= codebooks[level, codes[r, level]]


def warm_up() -> None:
    """Compile every kernel (or load it from the cache) for the argument types a stream
    passes, so that a live stream's first push does not wait for it (~6 s uncached)."""
    one = np.ones((1, 1), dtype=np.float32)
    flat = np.ones(1, dtype=np.float32)
    few_rows(one, one, flat, np.empty_like(one))
    elu(flat, np.float32(1.0), np.empty_like(flat))
    hidden_size = 1
    lstm_steps(
        np.zeros((1, 1, 4 * hidden_size), np.float32),
        np.zeros((4 * hidden_size, hidden_size), np.float32),
        np.zeros((1, hidden_size), np.float32),
        np.zeros((1, hidden_size), np.float32),
        np.empty((1, 1, hidden_size), np.float32),
    )
    codebooks = np.ones((1, 1, 1), np.float32)
    screen = codebook_screen(codebooks, one)
    nearest_codes(one.copy(), codebooks, one, screen, np.empty((1, 1), np.int64))
