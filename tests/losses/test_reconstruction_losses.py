"""Reconstruction losses against explicit DFT-matrix spectrograms (the numpy references of
tests/test_dsp.py) and hand-computed values."""

import math

import numpy as np
import pytest
import torch
from test_dsp import dft_mel

from encodec_train.losses.reconstruction import MultiScaleMelLoss, time_l1


def test_time_l1_hand_computed() -> None:
    pred = torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]]])
    target = torch.tensor([[[0.0, 4.0, 3.0]], [[1.0, -1.0, 0.0]]])
    # |1| + |-2| + 0 + |-1| + |1| + 0 = 5 over 6 samples.
    assert time_l1(pred, target).item() == pytest.approx(5 / 6)


def test_mel_spectrograms_match_dft_matrix() -> None:
    sample_rate, n_mels = 8000, 8
    loss = MultiScaleMelLoss(sample_rate, n_mels=n_mels, window_exponents=range(4, 7)).double()
    x = np.random.default_rng(1).standard_normal((2, 2, 256))
    spectrograms = loss.spectrograms(torch.from_numpy(x))
    assert len(spectrograms) == 3
    for n_fft, spec in zip([16, 32, 64], spectrograms, strict=True):
        for item in range(2):
            expected = dft_mel(x[item], n_fft, n_mels, sample_rate)
            # The filterbank and window are built in float32, then cast.
            np.testing.assert_allclose(spec[item].numpy(), expected, rtol=1e-5, atol=1e-8)


def test_paper_scales() -> None:
    loss = MultiScaleMelLoss(24000)
    spectrograms = loss.spectrograms(torch.randn(1, 1, 2400))
    # Windows 2^5 .. 2^11, hop window / 4, centred frames: 1 + time // hop.
    assert [s.shape for s in spectrograms] == [
        (1, 1, 64, 1 + 2400 // (2**i // 4)) for i in range(5, 12)
    ]


def test_mel_loss_hand_computed() -> None:
    loss = MultiScaleMelLoss(8000, n_mels=4, window_exponents=range(4, 6))
    silence = torch.zeros(1, 1, 64)  # its mel spectrograms are exactly 0
    shapes = [s.shape for s in loss.spectrograms(silence)]
    targets = [torch.full(shapes[0], 2.0), torch.full(shapes[1], 0.5)]
    # Per scale mean|Δ| + mean Δ²: 2 + 4 and 0.5 + 0.25; mean over the 2 scales.
    assert loss(silence, targets).item() == pytest.approx((6 + 0.75) / 2)


def test_mel_loss_matches_independent_computation() -> None:
    sample_rate, n_mels = 8000, 8
    loss = MultiScaleMelLoss(sample_rate, n_mels=n_mels, window_exponents=range(4, 7)).double()
    rng = np.random.default_rng(2)
    pred, target = rng.standard_normal((2, 1, 1, 256))
    value = loss(torch.from_numpy(pred), loss.spectrograms(torch.from_numpy(target)))
    per_scale = []
    for n_fft in [16, 32, 64]:
        delta = dft_mel(pred[0], n_fft, n_mels, sample_rate) - dft_mel(
            target[0], n_fft, n_mels, sample_rate
        )
        per_scale.append(np.abs(delta).mean() + (delta**2).mean())
    assert value.item() == pytest.approx(np.mean(per_scale), rel=1e-5)


def test_mel_loss_gradient_is_finite_on_silence() -> None:
    # |z| is not differentiable at 0; autograd must give 0 there, not NaN.
    loss = MultiScaleMelLoss(8000, n_mels=8, window_exponents=range(4, 7))
    pred = torch.zeros(1, 1, 256, requires_grad=True)
    loss(pred, loss.spectrograms(torch.randn(1, 1, 256))).backward()
    assert torch.isfinite(pred.grad).all()


def test_mel_loss_refuses_wrong_number_of_targets() -> None:
    loss = MultiScaleMelLoss(8000, n_mels=8, window_exponents=range(4, 7))
    x = torch.randn(1, 1, 256)
    with pytest.raises(ValueError, match="expected 3 target spectrograms"):
        loss(x, loss.spectrograms(x)[:2])


def test_buffers_stay_out_of_the_state_dict() -> None:
    assert MultiScaleMelLoss(24000).state_dict() == {}
    assert math.isclose(MultiScaleMelLoss(24000).window_2048.sum().item(), 1024, rel_tol=1e-6)


def test_log_mel_option_compares_log10_of_the_floored_spectrograms():
    """With `log_floor`, each scale compares log10(max(mel, floor)): checked against the
    linear spectrograms of the same module, logged by hand."""
    torch.manual_seed(0)
    x, y = torch.randn(2, 1, 4096), 0.5 * torch.randn(2, 1, 4096)
    linear = MultiScaleMelLoss(16000, n_mels=16, window_exponents=[8, 9])
    logged = MultiScaleMelLoss(16000, n_mels=16, window_exponents=[8, 9], log_floor=1e-3)
    expected = []
    for a, b in zip(linear.spectrograms(y), linear.spectrograms(x), strict=True):
        la, lb = np.log10(np.maximum(a.numpy(), 1e-3)), np.log10(np.maximum(b.numpy(), 1e-3))
        expected.append(np.abs(la - lb).mean() + ((la - lb) ** 2).mean())
    got = logged(y, logged.spectrograms(x))
    assert got.item() == pytest.approx(float(np.mean(expected)), rel=1e-5)
    with pytest.raises(ValueError, match="log_floor"):
        MultiScaleMelLoss(16000, log_floor=0.0)
