"""dsp: the normalized STFT and mel spectrogram against explicit DFT-matrix computations, and
the mel filterbank against a textbook HTK filterbank. The numpy references here are also used
by the loss tests (tests/losses/test_reconstruction_losses.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from encodec_train.dsp import mel_filterbank, mel_spectrogram, stft


def hann(length: int) -> np.ndarray:
    """Periodic Hann window, as torch.hann_window."""
    return 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(length) / length)


def dft_stft(x: np.ndarray, n_fft: int, hop: int, win: int, center: bool) -> np.ndarray:
    """[channels, time] -> complex [channels, n_fft // 2 + 1, frames], window-normalized."""
    if center:
        x = np.pad(x, [(0, 0), (n_fft // 2, n_fft // 2)], mode="reflect")
    window = np.zeros(n_fft)
    start = (n_fft - win) // 2
    window[start : start + win] = hann(win)
    n_frames = 1 + (x.shape[-1] - n_fft) // hop
    frames = np.stack([x[:, t * hop : t * hop + n_fft] for t in range(n_frames)], axis=-1)
    k, n = np.arange(n_fft // 2 + 1)[:, None], np.arange(n_fft)[None, :]
    dft = np.exp(-2j * np.pi * k * n / n_fft)
    return np.einsum("kn,cnt->ckt", dft, frames * window[:, None]) / np.sqrt(np.sum(window**2))


def htk_mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int) -> np.ndarray:
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


def dft_mel(x: np.ndarray, n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """[channels, time] -> [channels, n_mels, frames]: magnitude mel of the centred STFT."""
    spec = np.abs(dft_stft(x, n_fft, n_fft // 4, n_fft, center=True))
    return np.einsum("cft,fm->cmt", spec, htk_mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate))


@pytest.mark.parametrize("center", [False, True])
def test_stft_matches_dft_matrix(center: bool) -> None:
    x = np.random.default_rng(0).standard_normal((3, 200))
    n_fft, hop, win = 64, 16, 48
    expected = dft_stft(x, n_fft, hop, win, center)
    spec = stft(
        torch.from_numpy(x).reshape(1, 3, 200),
        torch.hann_window(win, dtype=torch.float64),
        n_fft,
        hop,
        center=center,
    )
    assert spec.shape == (1, *expected.shape)
    np.testing.assert_allclose(spec[0].numpy(), expected, atol=1e-10)


def test_stft_of_bf16_audio_is_computed_in_the_window_precision() -> None:
    x = torch.randn(2, 1, 300)
    window = torch.hann_window(64)
    spec = stft(x.bfloat16(), window, 64, 16, center=True)
    assert spec.dtype == torch.complex64
    expected = stft(x.bfloat16().float(), window, 64, 16, center=True)
    torch.testing.assert_close(spec, expected, rtol=0, atol=0)


def test_mel_filterbank_is_the_htk_filterbank_without_a_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 16 bands over a 32-point FFT leave empty filters
        bank = mel_filterbank(32, 16, 8000)
    assert bank.shape == (17, 16)
    np.testing.assert_allclose(bank.numpy(), htk_mel_filterbank(17, 16, 8000), atol=1e-6)


def test_mel_spectrogram_matches_dft_matrix() -> None:
    sample_rate, n_mels, n_fft = 8000, 8, 64
    x = np.random.default_rng(1).standard_normal((2, 3, 256))
    spec = mel_spectrogram(
        torch.from_numpy(x),
        torch.hann_window(n_fft, dtype=torch.float64),
        mel_filterbank(n_fft, n_mels, sample_rate).double(),
        hop_length=n_fft // 4,
    )
    for item in range(2):
        expected = dft_mel(x[item], n_fft, n_mels, sample_rate)
        np.testing.assert_allclose(spec[item].numpy(), expected, rtol=1e-5, atol=1e-8)
    # power 2: the same filterbank over the squared magnitudes
    power = mel_spectrogram(
        torch.from_numpy(x),
        torch.hann_window(n_fft, dtype=torch.float64),
        mel_filterbank(n_fft, n_mels, sample_rate).double(),
        hop_length=n_fft // 4,
        power=2.0,
    )
    squared = np.abs(dft_stft(x[0], n_fft, n_fft // 4, n_fft, center=True)) ** 2
    expected = np.einsum(
        "cft,fm->cmt", squared, htk_mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate)
    )
    np.testing.assert_allclose(power[0].numpy(), expected, rtol=1e-5, atol=1e-8)
