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


@pytest.mark.parametrize(
    ("outputs", "inputs", "rows"), [(1, 3, 1), (7, 5, 2), (8, 33, 3), (513, 700, 2)]
)
def test_few_rows_is_a_product_plus_bias(outputs, inputs, rows):
    """One to three rows of x, odd and even output counts."""
    generator = torch.Generator().manual_seed(outputs)
    weight = torch.randn(outputs, inputs, generator=generator)
    bias = torch.randn(outputs, generator=generator)
    x = torch.randn(rows, inputs, generator=generator)
    out = np.full((rows, outputs), np.nan, np.float32)
    kernels.few_rows(x.numpy(), weight.numpy(), bias.numpy(), out)
    expected = x.double() @ weight.double().T + bias.double()
    assert np.abs(out - expected.numpy()).max() < 1e-4


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


def test_lstm_steps_refuses_a_recurrent_weight_of_the_wrong_shape():
    """A [1, 1] recurrent weight for 4 gates left three gates unwritten (garbage memory): the
    warm-up once passed one, and its sigmoid of garbage divided by zero now and then."""
    gates_in = np.zeros((1, 1, 4), np.float32)
    state = (np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))
    with pytest.raises(ValueError, match="recurrent must be"):
        kernels.lstm_steps(
            gates_in, np.zeros((1, 1), np.float32), *state, np.empty_like(gates_in[..., :1])
        )
    kernels.warm_up()  # its arguments pass the check


def _search(codebooks: torch.Tensor, latent: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's codes and what is left of `latent`."""
    flat = codebooks.numpy()
    norms = codebooks.pow(2).sum(-1).numpy()
    residual = latent.numpy().copy()
    codes = np.empty((latent.shape[0], codebooks.shape[0]), np.int64)
    kernels.nearest_codes(residual, flat, norms, kernels.codebook_screen(flat, norms), codes)
    return codes, residual


def _nearest_level_by_level(codebooks: torch.Tensor, latent: torch.Tensor) -> list[list[int]]:
    """Residual quantisation in float64 by `torch.cdist`."""
    residual, levels = latent.double(), []
    for codebook in codebooks.double():
        nearest = torch.cdist(residual, codebook).argmin(1)
        levels.append(nearest.tolist())
        residual = residual - codebook[nearest]
    return levels


@pytest.mark.parametrize("offset", [0.0, 40.0])  # 40: codes far from the origin, as latents
@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e3])
def test_nearest_codes_are_the_nearest_codewords_level_by_level(offset, scale):
    generator = torch.Generator().manual_seed(1)
    codebooks = scale * (torch.randn(5, 256, 32, generator=generator) + offset)
    codebooks[1:] -= scale * offset  # later levels quantise residuals, centred on zero
    latent = scale * (3 * torch.randn(6, 32, generator=generator) + offset)
    codes, residual = _search(codebooks, latent)
    assert codes.T.tolist() == _nearest_level_by_level(codebooks, latent)
    expected = latent.double() - sum(codebooks.double()[i, codes[:, i]] for i in range(5))
    assert np.abs(residual - expected.numpy()).max() < 1e-5 * scale * (1 + offset)


def test_nearest_codes_are_exact_where_the_8_bit_codes_would_choose_another():
    """Latents whose nearest code by the 8-bit codes is not the nearest: the kernel still
    returns the nearest (the first pass only narrows the candidates)."""
    generator = torch.Generator().manual_seed(2)
    base = torch.randn(32, 8, generator=generator)
    base[torch.arange(32), torch.arange(32) % 8] = 20.0  # a spike per code: 8-bit steps ~0.14
    near = base + 0.05 * torch.randn(32, 8, generator=generator)  # pairs 0.05 apart compete
    codebook = torch.stack([base, near], 1).reshape(1, 64, 8)
    latent = base.repeat(8, 1) + 0.05 * torch.randn(256, 8, generator=generator)
    flat = codebook.numpy()
    screen = kernels.codebook_screen(flat, (flat**2).sum(-1))
    rebuilt = torch.from_numpy(screen.center[:, None] + screen.scale[..., None] * screen.quantized)
    by_8_bits = torch.cdist(latent.double(), rebuilt[0].double()).argmin(1)
    expected = _nearest_level_by_level(codebook, latent)[0]
    assert (by_8_bits != torch.tensor(expected)).sum() >= 20
    codes, _ = _search(codebook, latent)
    assert codes[:, 0].tolist() == expected


def test_nearest_codes_break_ties_by_the_first_code():
    generator = torch.Generator().manual_seed(4)
    codebook = torch.randn(1, 64, 16, generator=generator)
    latent = torch.randn(2, 16, generator=generator)
    codebook[0, 30] = codebook[0, 40] = latent[1] + 1e-3
    codes, _ = _search(codebook, latent)
    assert codes[1, 0] == 30
    assert codes.T.tolist() == _nearest_level_by_level(codebook, latent)


def test_codebooks_of_equal_codes_give_the_first():
    """A fresh model's codebooks are all zero: every code ties, the first is chosen."""
    codes, residual = _search(torch.zeros(3, 16, 8), torch.randn(2, 8))
    assert (codes == 0).all()


def test_the_8_bit_codes_are_within_their_bound_of_the_codes():
    """Each code e = center + scale·q + δ with ‖δ‖ at most spread / 2, so the first pass's
    error bound holds."""
    generator = torch.Generator().manual_seed(3)
    codebooks = (torch.randn(4, 128, 16, generator=generator) * 5 + 7).numpy()
    screen = kernels.codebook_screen(codebooks, (codebooks**2).sum(-1))
    rebuilt = screen.center[:, None] + screen.scale[..., None] * screen.quantized
    leftover = np.linalg.norm(codebooks.astype(np.float64) - rebuilt, axis=-1)
    assert (leftover <= screen.spread / 2).all()
    assert (leftover > 0).any() and np.abs(screen.quantized).max() == 127


def test_a_stream_compiles_its_kernels_when_it_opens_not_in_a_push():
    """A live stream's first push must not wait seconds for Numba: opening the stream warms
    every kernel up for exactly the argument types its pushes pass (no new compilation)."""
    names = ("few_rows", "elu", "lstm_steps", "nearest_codes")
    with encodec_tiny().streaming(3.0) as stream:
        opened = {name: len(getattr(kernels, name).signatures) for name in names}
        stream.decoder.push(stream.encoder.push(torch.randn(2, 1, 4000)))
        pushed = {name: len(getattr(kernels, name).signatures) for name in names}
    assert all(opened.values()) and pushed == opened
