"""The streaming path's Numba kernels against PyTorch's float64 computations of the same
functions (`encodec_train.model.stream_kernels`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from encodec_train.model import encodec_tiny
from encodec_train.model import stream_kernels as kernels


@pytest.mark.parametrize("alpha", [1.0, 0.5])
def test_elu_is_elu(alpha):
    x = torch.cat([torch.linspace(-120, 90, 20_001), torch.tensor([0.0, -1e-8, 1e-8])])
    flat = x.numpy()
    out = np.empty_like(flat)
    kernels.elu(flat, np.float32(alpha), out)
    expected = F.elu(x.double(), alpha)
    assert (torch.from_numpy(out).double() - expected).abs().max().item() < 2e-7


def test_lstm_steps_are_torch_s_lstm():
    """Three steps of a batch of two, from a non-zero state, gates reordered (i, f, o, g)."""
    torch.manual_seed(0)
    size, batch, steps = 48, 2, 3
    lstm = torch.nn.LSTM(20, size, batch_first=True).double()
    x = torch.randn(batch, steps, 20, dtype=torch.float64)
    h0, c0 = torch.randn(1, batch, size).double(), torch.randn(1, batch, size).double()
    with torch.no_grad():
        expected, (h_n, c_n) = lstm(x, (h0, c0))
        w_ih, w_hh, b_ih, b_hh = lstm.all_weights[0]
        order = torch.cat([torch.arange(2 * size), torch.arange(3 * size, 4 * size)])
        order = torch.cat([order, torch.arange(2 * size, 3 * size)])
        gates_in = (x @ w_ih[order].T + (b_ih + b_hh)[order]).float().numpy()
        recurrent = w_hh[order].float().contiguous().numpy()
    hidden, cell = h0[0].float().numpy().copy(), c0[0].float().numpy().copy()
    out = np.empty((batch, steps, size), np.float32)
    kernels.lstm_steps(gates_in, recurrent, hidden, cell, out)
    assert np.abs(out - expected.numpy()).max() < 1e-5
    assert np.abs(hidden - h_n[0].numpy()).max() < 1e-5
    assert np.abs(cell - c_n[0].numpy()).max() < 1e-5


def test_nearest_codes_are_the_nearest_codewords_level_by_level():
    generator = torch.Generator().manual_seed(1)
    codebooks = torch.randn(5, 64, 8, generator=generator)
    latent = 3 * torch.randn(3, 8, generator=generator)
    residual, codes = latent.numpy().copy(), np.empty((3, 5), np.int64)
    kernels.nearest_codes(residual, codebooks.numpy(), codebooks.pow(2).sum(-1).numpy(), codes)
    expected_residual = latent.double()
    for level, codebook in enumerate(codebooks.double()):
        nearest = torch.cdist(expected_residual, codebook).argmin(1)
        assert codes[:, level].tolist() == nearest.tolist()
        expected_residual = expected_residual - codebook[nearest]
    assert np.abs(residual - expected_residual.numpy()).max() < 1e-5


def test_a_stream_compiles_its_kernels_when_it_opens_not_in_a_push():
    """A live stream's first push must not wait seconds for Numba: opening the stream warms
    every kernel up for exactly the argument types its pushes pass (no new compilation)."""
    names = ("few_rows", "elu", "lstm_steps", "nearest_codes")
    with encodec_tiny().streaming(3.0) as stream:
        opened = {name: len(getattr(kernels, name).signatures) for name in names}
        stream.decoder.push(stream.encoder.push(torch.randn(2, 1, 4000)))
        pushed = {name: len(getattr(kernels, name).signatures) for name in names}
    assert all(opened.values()) and pushed == opened
