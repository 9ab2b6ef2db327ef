"""Reconstruction losses against explicit DFT-matrix spectrograms and hand-computed values."""

import math

import numpy as np
import pytest
import torch

from encodec_train.losses.reconstruction import MultiScaleMelLoss, stft, time_l1


def _hann(length: int) -> np.ndarray:
    # Periodic Hann window, as torch.hann_window.
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def _dft_stft(x: np.ndarray, n_fft: int, hop: int, win: int, center: bool) -> np.ndarray:
    """[channels, time] -> complex [channels, n_fft // 2 + 1, frames], window-normalized."""
    if center:
        x = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = _hann(win)
    n_frames = 1 + (x.shape[-1] - n_fft) // hop
    frames = np.stack([x[:, t * hop : t * hop + n_fft] for t in range(n_frames)], axis=-1)
    k, n = np.arange(n_fft // 2 + 1)[:, None], np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)
    return np.einsum("kn,cnt->ckt", dft, frames * window[:, None]) / np.sqrt(np.sum(window**2))


def _htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """Triangular filters [n_freqs, n_mels], equally spaced on the HTK mel scale, peak 1."""
    mel = lambda f: 2595 * np.log10(1 + f / 700)  # noqa: E731
    corners = 700 * (10 ** (np.linspace(0, mel(sample_rate / 2), n_mels + 2) / 2595) - 1)
    freqs = np.linspace(0, sample_rate / 2, n_freqs)
    bank = np.zeros((n_freqs, n_mels))
    for m in range(n_mels):
        low, peak, high = corners[m : m + 3]
        rising = (freqs - low) / (peak - low)
        falling = (high - freqs) / (high - peak)
        bank[:, m] = np.clip(np.minimum(rising, falling), 0, None)
    return bank


def _dft_mel(x: np.ndarray, n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """[channels, time] -> [channels, n_mels, frames]: magnitude mel of the centred STFT."""
    spec = np.abs(_dft_stft(x, n_fft, n_fft // 4, n_fft, center=True))
    return np.einsum("cft,fm->cmt", spec, _htk_mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate))


def test_time_l1_hand_computed() -> None:
    pred = torch.tensor([[[1.0, 2.0, 3.0]], [[0.0, 0.0, 0.0]]])
    target = torch.tensor([[[0.0, 4.0, 3.0]], [[1.0, -1.0, 0.0]]])
    # |1| + |-2| + 0 + |-1| + |1| + 0 = 5 over 6 samples.
    assert time_l1(pred, target).item() == pytest.approx(5 / 6)


@pytest.mark.parametrize("center", [False, True])
def test_stft_matches_dft_matrix(center: bool) -> None:
    x = np.random.default_rng(0).standard_normal((3, 200))
    n_fft, hop, win = 64, 16, 48
    expected = _dft_stft(x, n_fft, hop, win, center)
    spec = stft(
        torch.from_numpy(x).reshape(1, 3, 200),
        torch.hann_window(win, dtype=torch.float64),
        n_fft,
        hop,
        center=center,
    )
    assert spec.shape == (1, *expected.shape)
    np.testing.assert_allclose(spec[0].numpy(), expected, atol=1e-10)


def test_mel_spectrograms_match_dft_matrix() -> None:
    sample_rate, n_mels = 8000, 8
    loss = MultiScaleMelLoss(sample_rate, n_mels=n_mels, window_exponents=range(4, 7)).double()
    x = np.random.default_rng(1).standard_normal((2, 2, 256))
    spectrograms = loss.spectrograms(torch.from_numpy(x))
    assert len(spectrograms) == 3
    for n_fft, spec in zip([16, 32, 64], spectrograms, strict=True):
        for item in range(2):
            expected = _dft_mel(x[item], n_fft, n_mels, sample_rate)
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
        delta = _dft_mel(pred[0], n_fft, n_mels, sample_rate) - _dft_mel(
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
