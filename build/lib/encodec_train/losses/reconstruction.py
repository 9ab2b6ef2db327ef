"""Reconstruction losses: time-domain L1 and the multi-scale mel loss (EnCodec, Sec. 3.4).

The DSP lives in `encodec_train.dsp` (`stft`, `mel_spectrogram`, `mel_filterbank`);
`MultiScaleMelLoss` only holds their windows and filterbanks as buffers.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from encodec_train.dsp import mel_filterbank, mel_spectrogram


def time_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Time-domain reconstruction loss ℓt (EnCodec, Sec. 3.4): mean absolute error.

    Args:
        pred: decoded audio `[batch, channels, time]`.
        target: original audio `[batch, channels, time]`.
    Returns:
        scalar, the mean of |target - pred| over all samples.
    """
    return F.l1_loss(pred, target)


class MultiScaleMelLoss(nn.Module):
    """Multi-scale mel-spectrogram loss ℓf (EnCodec, Sec. 3.4, Eq. 1).

    For every scale i (window 2^i, hop 2^i / 4, `n_mels` bins), with S_i the mel spectrogram
    and Δ_i = S_i(x) - S_i(x̂), the loss is

        ℓf = 1 / |e| · Σ_i ( mean |Δ_i| + α_i · mean Δ_i² ),   α_i = 1,

    where |e| is the number of scales. Normalisation: the paper writes sums of L1 and L2 norms
    scaled by 1 / (|α|·|s|); we read the `1/|s|` as "mean over the spectrogram's elements"
    (so neither term depends on the batch size or segment length) and use the squared L2
    (mean squared error), as audiocraft does. Both terms use the same linear-amplitude mel
    spectrogram (audiocraft takes the L2 on log-mel instead; the paper does not).

    The target's spectrograms are computed once per step with `spectrograms` and passed to
    `forward`, so other consumers (metrics, logging) can share them.

    Args:
        sample_rate: audio sample rate in Hz.
        n_mels: mel bins per scale.
        window_exponents: i such that the windows are 2^i samples (paper: 5..11).
        f_min: lowest mel frequency in Hz.
        f_max: highest mel frequency in Hz (default: Nyquist).
        power: exponent of the STFT magnitude before the mel filterbank.
        log_floor: compare log10(max(mel, log_floor)) instead of the linear mel (audiocraft's
            choice; None = the paper's linear mel). Log-mel weighs quiet bins as much as loud
            ones, which makes a freshly initialised codec learn much faster.
    """

    def __init__(
        self,
        sample_rate: int,
        n_mels: int = 64,
        window_exponents: Sequence[int] = range(5, 12),
        f_min: float = 0.0,
        f_max: float | None = None,
        power: float = 1.0,
        log_floor: float | None = None,
    ) -> None:
        super().__init__()
        if log_floor is not None and not log_floor > 0:
            raise ValueError(f"log_floor must be positive or None, got {log_floor}")
        self.window_lengths = [2**i for i in window_exponents]
        self.power = power
        self.log_floor = log_floor
        for n_fft in self.window_lengths:
            filterbank = mel_filterbank(n_fft, n_mels, sample_rate, f_min, f_max)
            # Derived from the arguments, so kept out of checkpoints.
            self.register_buffer(f"filterbank_{n_fft}", filterbank, persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def spectrograms(self, x: Tensor) -> list[Tensor]:
        """Mel spectrograms at every scale.

        Args:
            x: audio `[batch, channels, time]`, longer than half the largest window.
        Returns:
            one `[batch, channels, n_mels, frames_i]` tensor per scale (log10 when `log_floor`).
        """
        spectrograms = [
            mel_spectrogram(
                x,
                getattr(self, f"window_{n_fft}"),
                getattr(self, f"filterbank_{n_fft}"),
                hop_length=n_fft // 4,
                power=self.power,
            )
            for n_fft in self.window_lengths
        ]
        if self.log_floor is None:
            return spectrograms
        return [torch.log10(spectrogram.clamp(min=self.log_floor)) for spectrogram in spectrograms]

    def forward(self, pred: Tensor, target_spectrograms: Sequence[Tensor]) -> Tensor:
        """ℓf between decoded audio and the target's precomputed spectrograms.

        Args:
            pred: decoded audio `[batch, channels, time]`.
            target_spectrograms: `self.spectrograms(target)`.
        Returns:
            scalar loss.
        """
        pred_spectrograms = self.spectrograms(pred)
        if len(target_spectrograms) != len(pred_spectrograms):
            raise ValueError(
                f"expected {len(pred_spectrograms)} target spectrograms (one per scale), "
                f"got {len(target_spectrograms)}"
            )
        per_scale = [
            F.l1_loss(p, t) + F.mse_loss(p, t)
            for p, t in zip(pred_spectrograms, target_spectrograms, strict=True)
        ]
        return torch.stack(per_scale).mean()
