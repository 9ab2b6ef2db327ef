"""Signal functions shared by the losses and the discriminator, in the style of
`torchaudio.functional`: pure functions over tensors, audio as `[batch, channels, time]`.

Modules that use them (`MultiScaleMelLoss`, the discriminator's `spec_transform`) only hold
the windows and filterbanks as buffers.
"""

from __future__ import annotations

import warnings

import torch
import torchaudio.functional
from torch import Tensor


def stft(
    x: Tensor,
    window: Tensor,
    n_fft: int,
    hop_length: int,
    center: bool,
) -> Tensor:
    """Complex one-sided STFT, divided by the window's L2 norm ("normalized STFT").

    Dividing by `sqrt(sum(window ** 2))` is torchaudio's `normalized=True`, which the
    reference discriminator uses, so that spectrogram scales do not grow with the window.

    Args:
        x: audio `[batch, channels, time]`.
        window: analysis window `[win_length]`, `win_length <= n_fft` (centred in the frame).
        n_fft: FFT size.
        hop_length: samples between frames.
        center: reflect-pad `n_fft // 2` samples on both sides so frame t is centred at
            `t * hop_length`; without it the frames start at 0 and no padding is added.
    Returns:
        complex `[batch, channels, n_fft // 2 + 1, frames]`.
    """
    batch, channels, length = x.shape
    # torch.stft has no bfloat16 kernel: compute in the window's precision (fp32 unless the
    # owning module was cast), also under autocast.
    spec = torch.stft(
        x.to(window.dtype).reshape(batch * channels, length),
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=window.shape[-1],
        window=window,
        center=center,
        pad_mode="reflect",
        return_complex=True,
    )
    spec = spec / window.pow(2).sum().sqrt()
    return spec.reshape(batch, channels, *spec.shape[-2:])


def mel_filterbank(
    n_fft: int,
    n_mels: int,
    sample_rate: int,
    f_min: float = 0.0,
    f_max: float | None = None,
) -> Tensor:
    """HTK mel filterbank for a one-sided `n_fft`-point spectrum (torchaudio's
    `melscale_fbanks`, without its warning about empty filters).

    Args:
        n_fft: FFT size; the spectrum has `n_fft // 2 + 1` bins.
        n_mels: number of mel bands.
        sample_rate: audio sample rate in Hz.
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz (default: Nyquist).
    Returns:
        `[n_fft // 2 + 1, n_mels]`.
    """
    with warnings.catch_warnings():
        # 64 bands over a 32-sample window necessarily leave empty filters (the paper's
        # setting); torchaudio warns about it on every call.
        warnings.filterwarnings("ignore", message="At least one mel filterbank")
        return torchaudio.functional.melscale_fbanks(
            n_fft // 2 + 1, f_min, f_max or sample_rate / 2, n_mels, sample_rate
        )


def mel_spectrogram(
    x: Tensor,
    window: Tensor,
    filterbank: Tensor,
    hop_length: int,
    power: float = 1.0,
) -> Tensor:
    """Mel spectrogram of the normalized, centred STFT, with `n_fft` equal to the window length.

    Args:
        x: audio `[batch, channels, time]`.
        window: analysis window `[n_fft]`.
        filterbank: `[n_fft // 2 + 1, n_mels]`, e.g. from `mel_filterbank`.
        hop_length: samples between frames.
        power: exponent of the magnitude (1 = magnitude, 2 = power).
    Returns:
        `[batch, channels, n_mels, frames]`.
    """
    spec = stft(x, window, window.shape[-1], hop_length, center=True).abs().pow(power)
    return torch.einsum("bcft,fm->bcmt", spec, filterbank)
