"""`x @ weight.T + bias` for a few rows of float64 `x` and float32 weights, in float64.

The entropy model's step multiplies 1 to a few dozen rows by matrices of up to 200 × 8192
(float64 arithmetic, for reproducible probabilities): there BLAS packs the whole matrix for
every call and reads it once per row, 2-8 times slower than this kernel, which reads each
weight row once for four input rows, keeps 16 sums in registers and converts the float32
weights as it goes (exactly: every float32 is a float64), so the weights take half the
memory traffic.

Rows go through the kernel in blocks of four, every one by the same code (callers pad the
rows to a multiple of four): a row's result depends on that row alone, not on the rows
computed with it, so the encoder may compute all steps at once and get the decoder's
step-by-step results bit for bit (tested). The summation order follows the compiled code (the
CPU's vector width): the probabilities' 1/64-bit grid absorbs differences between machines
(`probabilities`). Compiled by Numba on first use and cached beside this file.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def padded(rows: int) -> int:
    """`rows` rounded up to a multiple of four, the rows `rows_by_four` computes at once."""
    return -(-rows // 4) * 4


@njit(fastmath=True, cache=True)
def rows_by_four(x, weight, bias, out):  # pragma: no cover - compiled
    """out [rows, out] = x [rows, in] @ weight.T ([out, in], float32) + bias [out], for rows
    a multiple of four; C order."""
    rows, depth = x.shape
    columns = weight.shape[0]
    if rows % 4:
        raise ValueError("rows_by_four takes a multiple of four rows")
    full_columns = columns - columns % 4
    for j in range(0, full_columns, 4):
        w0, w1, w2, w3 = weight[j], weight[j + 1], weight[j + 2], weight[j + 3]
        for r in range(0, rows, 4):
            x0, x1, x2, x3 = x[r], x[r + 1], x[r + 2], x[r + 3]
            a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = 0.0
            a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = 0.0
            for k in range(depth):
                v0, v1 = np.float64(w0[k]), np.float64(w1[k])
                v2, v3 = np.float64(w2[k]), np.float64(w3[k])
                y = x0[k]
                a00 += y * v0
                a01 += y * v1
                a02 += y * v2
                a03 += y * v3
                y = x1[k]
                a10 += y * v0
                a11 += y * v1
                a12 += y * v2
                a13 += y * v3
                y = x2[k]
                a20 += y * v0
                a21 += y * v1
                a22 += y * v2
                a23 += y * v3
                y = x3[k]
                a30 += y * v0
                a31 += y * v1
                a32 += y * v2
                a33 += y * v3
            b0, b1, b2, b3 = bias[j], bias[j + 1], bias[j + 2], bias[j + 3]
            out[r, j], out[r, j + 1] = a00 + b0, a01 + b1
            out[r, j + 2], out[r, j + 3] = a02 + b2, a03 + b3
            out[r + 1, j], out[r + 1, j + 1] = a10 + b0, a11 + b1
            out[r + 1, j + 2], out[r + 1, j + 3] = a12 + b2, a13 + b3
            out[r + 2, j], out[r + 2, j + 1] = a20 + b0, a21 + b1
            out[r + 2, j + 2], out[r + 2, j + 3] = a22 + b2, a23 + b3
            out[r + 3, j], out[r + 3, j + 1] = a30 + b0, a31 + b1
            out[r + 3, j + 2], out[r + 3, j + 3] = a32 + b2, a33 + b3
    for j in range(full_columns, columns):
        w = weight[j]
        for r in range(rows):
            xr = x[r]
            s = 0.0
            for k in range(depth):
                s += xr[k] * np.float64(w[k])
            out[r, j] = s + bias[j]
