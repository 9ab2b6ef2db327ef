"""SEANet encoder and decoder (paper §3.1), laid out as the official EnCodec models.

Module indices inside `model` (an `nn.Sequential`) match the official checkpoints: ELU layers
take the positions between convolutions, so key names such as `encoder.model.1.block.1` line up.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from encodec_train.model.conv import StreamableConv1d, StreamableConvTranspose1d
from encodec_train.model.lstm import StreamableLSTM


class SEANetResnetBlock(nn.Module):
    """Residual unit: ELU → conv(k, dilation) → ELU → conv(1), plus a 1×1 conv shortcut.

    Args:
        dim: channels in and out.
        kernel_size: kernel of the first conv (3 in EnCodec).
        dilation: dilation of the first conv.
        compress: hidden channels are dim // compress.
        true_skip: identity shortcut instead of the official 1×1 conv.
        causal, norm, pad_mode: see `StreamableConv1d`.
    """

    def __init__(
        self,
        dim: int,
        kernel_size: int = 3,
        dilation: int = 1,
        compress: int = 2,
        true_skip: bool = False,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        hidden = dim // compress
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        self.block = nn.Sequential(
            nn.ELU(alpha=1.0),
            StreamableConv1d(dim, hidden, kernel_size, dilation=dilation, **conv),
            nn.ELU(alpha=1.0),
            StreamableConv1d(hidden, dim, 1, **conv),
        )
        self.shortcut = nn.Identity() if true_skip else StreamableConv1d(dim, dim, 1, **conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.block(x)


class SEANetEncoder(nn.Module):
    """Waveform `[batch, channels, time]` → latent `[batch, dimension, ceil(time / hop)]`.

    Args:
        channels: audio channels.
        dimension: latent dimension D (128 in EnCodec).
        n_filters: base width C (32); doubled at each downsampling.
        ratios: upsampling ratios of the decoder (8, 5, 4, 2); the encoder uses them reversed.
        n_residual_layers: residual units per stage (dilations 1, 2, 4, ...).
        lstm_layers: LSTM layers at the bottleneck (0 disables it).
        kernel_size, last_kernel_size, residual_kernel_size: 7, 7 and 3 in EnCodec.
        causal, norm, pad_mode: see `StreamableConv1d`.
        compress, true_skip: see `SEANetResnetBlock`.
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        lstm_layers: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
        compress: int = 2,
        true_skip: bool = False,
    ) -> None:
        super().__init__()
        self.ratios = list(reversed(ratios))
        self.hop_length = math.prod(self.ratios)
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        width = n_filters
        layers: list[nn.Module] = [StreamableConv1d(channels, width, kernel_size, **conv)]
        for ratio in self.ratios:
            layers += [
                SEANetResnetBlock(
                    width,
                    residual_kernel_size,
                    dilation_base**j,
                    compress=compress,
                    true_skip=true_skip,
                    **conv,
                )
                for j in range(n_residual_layers)
            ]
            layers += [
                nn.ELU(alpha=1.0),
                StreamableConv1d(width, width * 2, ratio * 2, stride=ratio, **conv),
            ]
            width *= 2
        if lstm_layers:
            layers.append(StreamableLSTM(width, lstm_layers))
        layers += [nn.ELU(alpha=1.0), StreamableConv1d(width, dimension, last_kernel_size, **conv)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent `[batch, dimension, frames]` → waveform `[batch, channels, frames · hop]`.

    Mirror of `SEANetEncoder` with transposed convolutions; no final activation (as the paper).
    `trim_right_ratio` is passed to the transposed convolutions (causal models only).
    """

    def __init__(
        self,
        channels: int = 1,
        dimension: int = 128,
        n_filters: int = 32,
        ratios: Sequence[int] = (8, 5, 4, 2),
        n_residual_layers: int = 1,
        lstm_layers: int = 2,
        kernel_size: int = 7,
        last_kernel_size: int = 7,
        residual_kernel_size: int = 3,
        dilation_base: int = 2,
        causal: bool = False,
        norm: str = "weight_norm",
        pad_mode: str = "reflect",
        compress: int = 2,
        true_skip: bool = False,
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        self.ratios = list(ratios)
        self.hop_length = math.prod(self.ratios)
        conv = dict(causal=causal, norm=norm, pad_mode=pad_mode)
        width = n_filters * 2 ** len(self.ratios)
        layers: list[nn.Module] = [StreamableConv1d(dimension, width, kernel_size, **conv)]
        if lstm_layers:
            layers.append(StreamableLSTM(width, lstm_layers))
        for ratio in self.ratios:
            layers += [
                nn.ELU(alpha=1.0),
                StreamableConvTranspose1d(
                    width,
                    width // 2,
                    ratio * 2,
                    stride=ratio,
                    causal=causal,
                    norm=norm,
                    trim_right_ratio=trim_right_ratio,
                ),
            ]
            width //= 2
            layers += [
                SEANetResnetBlock(
                    width,
                    residual_kernel_size,
                    dilation_base**j,
                    compress=compress,
                    true_skip=true_skip,
                    **conv,
                )
                for j in range(n_residual_layers)
            ]
        layers += [
            nn.ELU(alpha=1.0),
            StreamableConv1d(n_filters, channels, last_kernel_size, **conv),
        ]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
