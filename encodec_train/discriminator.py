"""Multi-scale STFT discriminator (EnCodec, Sec. 3.4 and Fig. 2).

Parameter names and shapes follow the reference `encodec.msstftd`, so a reference state dict
(old-style `weight_g`/`weight_v` keys) loads with `load_state_dict` as is: torch's
parametrized weight norm converts those keys on load.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from encodec_train.dsp import stft
from encodec_train.model.init import initialize_


class _Conv2d(nn.Module):
    """Conv2d with "same" padding for odd kernels, optionally weight-normed.

    The wrapper exists so parameters are named `<layer>.conv.*`, as in the reference.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: tuple[int, int],
        stride: tuple[int, int] = (1, 1),
        dilation: tuple[int, int] = (1, 1),
        normalize: bool = True,
    ) -> None:
        super().__init__()
        padding = tuple((k - 1) * d // 2 for k, d in zip(kernel_size, dilation, strict=True))
        conv = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            dilation=dilation,
            padding=padding,
        )
        self.conv = weight_norm(conv) if normalize else conv

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class _ComplexSpectrogram(nn.Module):
    """Holds the Hann window of one scale; named `spec_transform` like the reference's."""

    def __init__(self, n_fft: int, hop_length: int, win_length: int) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.hop_length = hop_length
        # Persistent only because the reference's state dict carries it.
        self.register_buffer("window", torch.hann_window(win_length))

    def forward(self, x: Tensor) -> Tensor:
        """`[batch, channels, time]` -> complex `[batch, channels, n_fft // 2 + 1, frames]`."""
        return stft(x, self.window, self.n_fft, self.hop_length, center=False)


class STFTDiscriminator(nn.Module):
    """One scale of the MS-STFT discriminator.

    Real and imaginary parts of the normalized STFT are stacked as channels, then a Conv2d,
    one strided Conv2d per time dilation (stride 2 on frequency), a square Conv2d, each followed
    by LeakyReLU, and a square Conv2d to one logit channel. All convs but the first are
    weight-normed, as in the reference (and audiocraft).

    Args:
        in_channels: audio channels (1 mono, 2 stereo).
        filters: channels of every hidden conv.
        n_fft: FFT size.
        hop_length: samples between STFT frames.
        win_length: Hann window length, at most `n_fft`.
        kernel_size: (time, frequency) kernel of the first and the dilated convs.
        dilations: time dilation of each strided conv.
        negative_slope: LeakyReLU slope.
    """

    def __init__(
        self,
        in_channels: int,
        filters: int,
        n_fft: int,
        hop_length: int,
        win_length: int,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: Sequence[int] = (1, 2, 4),
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        self.negative_slope = negative_slope
        self.spec_transform = _ComplexSpectrogram(n_fft, hop_length, win_length)
        square = (kernel_size[0], kernel_size[0])
        self.convs = nn.ModuleList(
            [_Conv2d(2 * in_channels, filters, kernel_size, normalize=False)]
        )
        self.convs.extend(
            _Conv2d(filters, filters, kernel_size, stride=(1, 2), dilation=(dilation, 1))
            for dilation in dilations
        )
        self.convs.append(_Conv2d(filters, filters, square))
        self.conv_post = _Conv2d(filters, 1, square)

    def spectrogram(self, x: Tensor) -> Tensor:
        """The first conv's input: `[batch, channels, time]` audio -> real and imaginary
        parts of the normalized STFT, `[batch, 2 * channels, frames, freqs]`, in the memory
        format of the conv weights (channels-last after `to(memory_format=...)`)."""
        spec = torch.view_as_real(self.spec_transform(x))
        # [batch, channels, freqs, frames, (real, imag)] -> [batch, 2 * channels, frames, freqs]
        # (all real parts, then all imaginary parts), copied once into the conv's layout.
        z = spec.permute(0, 4, 1, 3, 2).flatten(1, 2)
        # The first conv is not weight-normed: its weight is a plain parameter.
        return z.contiguous(memory_format=_memory_format(self.convs[0].conv.weight))

    def judge(self, z: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and feature maps of a `spectrogram`.

        Returns:
            logits `[batch, 1, frames, freqs']` and the activations after each hidden conv,
            `[batch, filters, frames, freqs_k]`.
        """
        feature_maps = []
        for conv in self.convs:
            # In place on the conv's output (its backward needs only its input and weight):
            # the same values, one activation-sized buffer fewer per layer.
            z = F.leaky_relu(conv(z), self.negative_slope, inplace=True)
            feature_maps.append(z)
        return self.conv_post(z), feature_maps

    def forward(self, x: Tensor) -> tuple[Tensor, list[Tensor]]:
        """Logits and feature maps of one scale for audio `x` `[batch, channels, time]`, at
        least `n_fft` samples (see `judge`)."""
        return self.judge(self.spectrogram(x))


def _memory_format(weight: Tensor) -> torch.memory_format:
    channels_last = weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if channels_last else torch.contiguous_format


class MultiScaleSTFTDiscriminator(nn.Module):
    """MS-STFT discriminator: one `STFTDiscriminator` per STFT scale (EnCodec, Sec. 3.4).

    Args:
        in_channels: audio channels (1 mono, 2 stereo).
        filters: channels of every hidden conv (paper: 32).
        n_ffts: FFT size of each scale (paper: 2048, 1024, 512, 256, 128).
        hop_lengths: hop of each scale; default `n_fft // 4`.
        win_lengths: window length of each scale; default `n_fft`.
        kernel_size: (time, frequency) kernel of the first and the dilated convs.
        dilations: time dilation of each strided conv.
        negative_slope: LeakyReLU slope.
        init: "pytorch" (default initialisation, as the reference) or "unit_norm" (unit-norm
            filters and zero biases, so the logits start away from 0; `encodec_train.model.init`).
        separate_channels: judge each audio channel on its own (the paper's 48 kHz stereo
            model: "left and right channels ... separately", §3.4) instead of stacking them as
            input channels of one 2-D conv (the reference code).
    """

    def __init__(
        self,
        in_channels: int = 1,
        filters: int = 32,
        n_ffts: Sequence[int] = (2048, 1024, 512, 256, 128),
        hop_lengths: Sequence[int] | None = None,
        win_lengths: Sequence[int] | None = None,
        kernel_size: tuple[int, int] = (3, 9),
        dilations: Sequence[int] = (1, 2, 4),
        negative_slope: float = 0.2,
        init: str = "pytorch",
        separate_channels: bool = False,
    ) -> None:
        super().__init__()
        self.separate_channels = separate_channels
        if separate_channels:
            in_channels = 1
        win_lengths = list(n_ffts) if win_lengths is None else list(win_lengths)
        hop_lengths = [w // 4 for w in win_lengths] if hop_lengths is None else list(hop_lengths)
        if not len(n_ffts) == len(hop_lengths) == len(win_lengths):
            raise ValueError(
                f"n_ffts, hop_lengths and win_lengths differ in length: "
                f"{len(n_ffts)}, {len(hop_lengths)}, {len(win_lengths)}"
            )
        self.discriminators = nn.ModuleList(
            STFTDiscriminator(
                in_channels,
                filters,
                n_fft,
                hop_length,
                win_length,
                kernel_size=tuple(kernel_size),
                dilations=dilations,
                negative_slope=negative_slope,
            )
            for n_fft, hop_length, win_length in zip(n_ffts, hop_lengths, win_lengths, strict=True)
        )
        initialize_(self, init)

    def spectrograms(self, x: Tensor) -> list[Tensor]:
        """Every scale's `STFTDiscriminator.spectrogram` of audio `[batch, channels, time]`:
        what `judge` takes, so a training step can compute them once per signal and judge
        them several times."""
        if self.separate_channels:
            x = x.reshape(-1, 1, x.shape[-1])
        return [discriminator.spectrogram(x) for discriminator in self.discriminators]

    def judge(self, spectrograms: list[Tensor]) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Logits and feature maps of every scale from `spectrograms(x)` (see `forward`)."""
        outputs = [
            discriminator.judge(z)
            for discriminator, z in zip(self.discriminators, spectrograms, strict=True)
        ]
        return [logits for logits, _ in outputs], [maps for _, maps in outputs]

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[list[Tensor]]]:
        """Logits and feature maps of every scale.

        Args:
            x: audio `[batch, channels, time]`, at least the largest `n_fft` samples.
        Returns:
            `(logits, feature_maps)`: one logit tensor `[batch, 1, frames, freqs']` per scale,
            and per scale the list of its hidden activations; with `separate_channels`, each
            channel is an item of its own (`batch · channels` rows, channel-minor).
        """
        return self.judge(self.spectrograms(x))
