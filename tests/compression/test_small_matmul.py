"""The matrix kernel of the coding step: the product, and each row's result its own."""

import numpy as np
import pytest

from encodec_train.compression.small_matmul import padded, rows_by_four


def test_rows_by_four_is_the_product_and_each_row_depends_on_itself_alone():
    """x @ w.T + b to float64 rounding (203 columns: blocks of four and a tail), and a row's
    result is the same bits whatever rows come with it (other order, alone with zeros)."""
    rng = np.random.default_rng(0)
    weight = rng.standard_normal((203, 37)).astype(np.float32)
    bias, x = rng.standard_normal(203), rng.standard_normal((12, 37))
    out = np.empty((12, 203))
    rows_by_four(x, weight, bias, out)
    np.testing.assert_allclose(out, x @ weight.astype(np.float64).T + bias, rtol=0, atol=1e-12)
    order = rng.permutation(12)
    shuffled = np.empty_like(out)
    rows_by_four(np.ascontiguousarray(x[order]), weight, bias, shuffled)
    assert np.array_equal(shuffled, out[order])
    alone = np.zeros((4, 37))
    alone[2] = x[5]
    result = np.empty((4, 203))
    rows_by_four(alone, weight, bias, result)
    assert np.array_equal(result[2], out[5])
    assert [padded(n) for n in (1, 4, 5, 8)] == [4, 4, 8, 8]
    with pytest.raises(ValueError, match="multiple of four"):
        rows_by_four(x[:3].copy(), weight, bias, out[:3].copy())
