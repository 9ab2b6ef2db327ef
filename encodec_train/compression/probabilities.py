"""The entropy model's logits as integer weights that every process and machine computes alike.

Encoder and decoder must build bit-identical distributions. On one machine their logits are
equal bit for bit (`step_model`: the encoder's all-at-once pass computes each row as the
decoder's steps do); but the decoder may run on another machine, whose vector units sum the
matrix products in another order, or with another libm: float results differ in the last bits. So the model
runs in float64 (differences ~1e-15 instead of ~1e-6 in float32), its logits are rounded to
a grid of 1/64 bit, and everything after that is integer arithmetic:

    m_i = round(logit_i × 64 / ln 2)           (int64: the logit in 1/64 bit)
    w_i = floor(2 ** (31 + (m_i - max m) / 64)) (from an exact table of 2**(31 + r/64))

The weights are proportional to the softmax up to a relative error of 2**(1/128) − 1 < 0.6%
per entry (a coding cost far below 0.01 bit per code). Two computations disagree only if a
logit lands within their float64 difference of a rounding boundary of the 1/64-bit grid.
Measured between the coding step and PyTorch's float64 model (another implementation, as
another machine would be; paper-size model, 4 × 75 steps): at most 4.4e-15 (4e-13 of a grid
step), so below 1e-12 per logit, i.e. about once in 500 hours of 24 kHz audio at 6 kbps
(614,400 logits a second); the file's checksum then turns that into a clear error, never into
wrong audio. The formula runs compiled (Numba, integer arithmetic after the rounding).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit

STEPS_PER_BIT = 64
"""The logit grid: 1/64 bit."""
WEIGHT_BITS = 31
"""The most likely entry's weight is 2**31; the others are smaller (0 below 2**-31 of it)."""


def _exact_table() -> np.ndarray:
    """floor(2 ** (WEIGHT_BITS + r / STEPS_PER_BIT)) for r in [0, STEPS_PER_BIT), in integer
    arithmetic alone (no platform `pow`): the largest w with w**STEPS ≤ 2**(WEIGHT_BITS·STEPS + r)."""
    table = []
    for r in range(STEPS_PER_BIT):
        target = 1 << (WEIGHT_BITS * STEPS_PER_BIT + r)
        low, high = 1 << WEIGHT_BITS, 1 << (WEIGHT_BITS + 1)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if middle**STEPS_PER_BIT <= target else (low, middle)
        table.append(low)
    return np.array(table, dtype=np.int64)


_TABLE = _exact_table()
_SCALE = STEPS_PER_BIT / math.log(2)


@njit(cache=True)
def _grid_weights(logits, table, out):  # pragma: no cover - compiled
    """The formula of `integer_weights` over the rows of logits [rows, card] into out."""
    rows, card = logits.shape
    grid = np.empty(card, dtype=np.int64)
    for r in range(rows):
        top = np.int64(-(2**62))
        for i in range(card):
            grid[i] = np.int64(np.rint(logits[r, i] * _SCALE))
            top = max(top, grid[i])
        for i in range(card):
            shift, remainder = divmod(top - grid[i], STEPS_PER_BIT)  # ≥ 0, in 1/64 bit
            # 2**(31 - shift - remainder/64) = (table entry for 64 - remainder) >> (shift + 1),
            # or the entry for 0 when remainder is 0.
            if remainder > 0:
                out[r, i] = table[STEPS_PER_BIT - remainder] >> min(shift + 1, 63)
            else:
                out[r, i] = table[0] >> min(shift, 63)


def integer_weights(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """int64 weights [..., card] proportional to softmax(`logits`) (float64 [..., card]) on the
    1/64-bit grid; the largest is 2**31."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    if logits.dtype != np.float64:
        raise TypeError(f"logits must be float64 for reproducible weights, got {logits.dtype}")
    if not np.isfinite(logits).all():
        raise ValueError("the entropy model gave non-finite logits")
    rows = np.ascontiguousarray(logits).reshape(-1, logits.shape[-1])
    out = np.empty(rows.shape, dtype=np.int64)
    _grid_weights(rows, _TABLE, out)
    return out.reshape(logits.shape)


def probabilities(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """float64 [..., card] weights for the range coder: `integer_weights`, exactly (each
    < 2**53). The coder normalises them; constriction gives every entry, even a zero, at
    least its smallest probability, so any code can be coded."""
    return integer_weights(logits).astype(np.float64)
