"""SEANet encoder and decoder (paper §3.1), laid out as the official EnCodec models.

Module indices inside `model` (an `nn.Sequential`) match the official checkpoints: ELU layers
take the positions between convolutions, so key names such as `encoder.model.1.block.1` line up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SEANetShape:
    """Hyper-parameters shared by the SEANet encoder and decoder.

    Args:
        channels: audio channels.
        dimension: latent dimension D (128 in EnCodec).
        n_filters: base width C (32); doubled at each downsampling.
        ratios: upsampling ratios of the decoder (8, 5, 4, 2); the encoder uses them reversed.
        n_residual_layers: residual units per stage (dilations 1, 2, 4, ...).
        lstm_layers: LSTM layers at the bottleneck (0 disables it).
        kernel_size, last_kernel_size, residual_kernel_size: 7, 7 and 3 in EnCodec.
        dilation_base: growth of the residual units' dilation.
        causal, norm, pad_mode: see `StreamableConv1d`.
        compress, true_skip: see `SEANetResnetBlock`.
    """

    channels: int = 1
    dimension: int = 128
    n_filters: int = 32
    ratios: tuple[int, ...] = (8, 5, 4, 2)
    n_residual_layers: int = 1
    lstm_layers: int = 2
    kernel_size: int = 7
    last_kernel_size: int = 7
    residual_kernel_size: int = 3
    dilation_base: int = 2
    causal: bool = False
    norm: str = "weight_norm"
    pad_mode: str = "reflect"
    compress: int = 2
    true_skip: bool = False

    @property
    def hop_length(self) -> int:
        return math.prod(self.ratios)

    def conv(
        self, in_channels: int, out_channels: int, kernel_size: int, **kwargs
    ) -> StreamableConv1d:
        return StreamableConv1d(
            in_channels,
            out_channels,
            kernel_size,
            causal=self.causal,
            norm=self.norm,
            pad_mode=self.pad_mode,
            **kwargs,
        )

    def residual_units(self, width: int) -> list[nn.Module]:
        return [
            SEANetResnetBlock(
                width,
                self.residual_kernel_size,
                self.dilation_base**j,
                compress=self.compress,
                true_skip=self.true_skip,
                causal=self.causal,
                norm=self.norm,
                pad_mode=self.pad_mode,
            )
            for j in range(self.n_residual_layers)
        ]


class SEANetEncoder(nn.Module):
    """Waveform `[batch, channels, time]` → latent `[batch, dimension, ceil(time / hop)]`."""

    def __init__(self, shape: SEANetShape) -> None:
        super().__init__()
        self.ratios = list(reversed(shape.ratios))
        self.hop_length = shape.hop_length
        width = shape.n_filters
        layers: list[nn.Module] = [shape.conv(shape.channels, width, shape.kernel_size)]
        for ratio in self.ratios:
            layers += shape.residual_units(width)
            layers += [nn.ELU(alpha=1.0), shape.conv(width, width * 2, ratio * 2, stride=ratio)]
            width *= 2
        if shape.lstm_layers:
            layers.append(StreamableLSTM(width, shape.lstm_layers))
        layers += [nn.ELU(alpha=1.0), shape.conv(width, shape.dimension, shape.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class SEANetDecoder(nn.Module):
    """Latent `[batch, dimension, frames]` → waveform `[batch, channels, frames · hop]`.

    Mirror of `SEANetEncoder` with transposed convolutions; no final activation (as the paper).
    `trim_right_ratio` is passed to the transposed convolutions (causal models only).
    """

    def __init__(self, shape: SEANetShape, trim_right_ratio: float = 1.0) -> None:
        super().__init__()
        self.ratios = list(shape.ratios)
        self.hop_length = shape.hop_length
        width = shape.n_filters * 2 ** len(self.ratios)
        layers: list[nn.Module] = [shape.conv(shape.dimension, width, shape.kernel_size)]
        if shape.lstm_layers:
            layers.append(StreamableLSTM(width, shape.lstm_layers))
        for ratio in self.ratios:
            upsample = StreamableConvTranspose1d(
                width,
                width // 2,
                ratio * 2,
                stride=ratio,
                causal=shape.causal,
                norm=shape.norm,
                trim_right_ratio=trim_right_ratio,
            )
            width //= 2
            layers += [nn.ELU(alpha=1.0), upsample, *shape.residual_units(width)]
        layers += [nn.ELU(alpha=1.0), shape.conv(width, shape.channels, shape.last_kernel_size)]
        self.model = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.model(z)
