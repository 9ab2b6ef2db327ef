"""Streamable 1-D convolutions: causal or centred padding, weight norm or time-group norm.

Attribute names (`conv.conv`, `convtr.convtr`, `conv.norm`) follow the official EnCodec
checkpoints so their state dicts load without renaming.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

NORMS = ("none", "weight_norm", "time_group_norm")


def _check_norm(norm: str, causal: bool) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm={norm!r} is not supported; choose one of {NORMS}")
    if norm == "time_group_norm" and causal:
        raise ValueError("norm='time_group_norm' looks at the whole chunk and cannot be causal")


def extra_padding_for_conv1d(length: int, kernel_size: int, stride: int, padding_total: int) -> int:
    """Right padding that makes the last window full, so a transposed conv rebuilds every sample."""
    n_frames = (length - kernel_size + padding_total) / stride + 1
    ideal_length = (math.ceil(n_frames) - 1) * stride + (kernel_size - padding_total)
    return ideal_length - length


def pad1d(x: torch.Tensor, paddings: tuple[int, int], mode: str = "constant") -> torch.Tensor:
    """`F.pad` over the last axis that also reflect-pads inputs shorter than the padding.

    Reflection needs more samples than the pad; a short input is zero-extended first and the
    extension is cut off again afterwards (as the official model does).
    """
    left, right = paddings
    if not left and not right:
        return x  # F.pad would copy the whole input (1×1 convolutions pad nothing)
    if mode != "reflect":
        return F.pad(x, paddings, mode)
    length = x.shape[-1]
    extra = max(0, max(left, right) - length + 1)
    if extra:
        x = F.pad(x, (0, extra))
    padded = _reflect(x, left, right)
    return padded[..., : padded.shape[-1] - extra]


def _reflect(x: torch.Tensor, left: int, right: int) -> torch.Tensor:
    """`F.pad(x, (left, right), "reflect")` as one concatenation of x and its mirrored
    edges: the same values and gradients, ~3× faster on CPU than `F.pad`'s reflect kernel
    (8.8 against 2.7 ms on a [1, 32, 240000] input)."""
    parts = [x]
    if left:
        parts.insert(0, x[..., 1 : left + 1].flip(-1))
    if right:
        parts.append(x[..., -right - 1 : -1].flip(-1))
    return torch.cat(parts, dim=-1)


def unpad1d(x: torch.Tensor, paddings: tuple[int, int]) -> torch.Tensor:
    """Remove `paddings = (left, right)` samples from the last axis."""
    left, right = paddings
    return x[..., left : x.shape[-1] - right]


def split_padding(padding_total: int, causal: bool) -> tuple[int, int]:
    """(left, right): all on the left when causal, otherwise floor(total/2) on the right."""
    if causal:
        return padding_total, 0
    right = padding_total // 2
    return padding_total - right, right


def _normalized_conv(conv: nn.Module, norm: str, causal: bool) -> tuple[nn.Module, nn.Module]:
    """(the conv, weight-normed when asked; the layer after it: GroupNorm or identity)."""
    _check_norm(norm, causal)
    # The parametrization's load hook also accepts old-style `weight_g` / `weight_v` keys.
    normalized = weight_norm(conv) if norm == "weight_norm" else conv
    after = nn.GroupNorm(1, conv.out_channels) if norm == "time_group_norm" else nn.Identity()
    return normalized, after


class NormConv1d(nn.Module):
    """`nn.Conv1d` with its normalisation (weight norm on the weight, or GroupNorm after it)."""

    def __init__(self, *args, norm: str = "none", causal: bool = False, **kwargs) -> None:
        super().__init__()
        self.conv, self.norm = _normalized_conv(nn.Conv1d(*args, **kwargs), norm, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(x))


class NormConvTranspose1d(nn.Module):
    """`nn.ConvTranspose1d` with its normalisation (`convtr` as the official key names)."""

    def __init__(self, *args, norm: str = "none", causal: bool = False, **kwargs) -> None:
        super().__init__()
        self.convtr, self.norm = _normalized_conv(nn.ConvTranspose1d(*args, **kwargs), norm, causal)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.convtr(x))


class StreamableConv1d(nn.Module):
    """Conv1d that pads its input itself, causally or centred, so output length = ceil(T / stride).

    Args:
        in_channels, out_channels, kernel_size, stride, dilation: as in `nn.Conv1d`.
        causal: put all the padding on the left (streaming model).
        norm: "none", "weight_norm" or "time_group_norm".
        pad_mode: `F.pad` mode for the fixed padding ("reflect" in EnCodec, or "constant").
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        dilation: int = 1,
        causal: bool = False,
        norm: str = "none",
        pad_mode: str = "reflect",
    ) -> None:
        super().__init__()
        self.conv = NormConv1d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            dilation=dilation,
            norm=norm,
            causal=causal,
        )
        self.causal = causal
        self.pad_mode = pad_mode
        self.kernel_size = kernel_size
        self.stride = stride
        # Effective kernel (k - 1)·d + 1, minus the stride: what the windows need beyond the input.
        self.padding_total = (kernel_size - 1) * dilation - (stride - 1)
        self.effective_kernel = (kernel_size - 1) * dilation + 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in_channels, time] -> [batch, out_channels, ceil(time / stride)]"""
        extra = extra_padding_for_conv1d(
            x.shape[-1], self.effective_kernel, self.stride, self.padding_total
        )
        left, right = split_padding(self.padding_total, self.causal)
        return self.conv(pad1d(x, (left, right + extra), self.pad_mode))


class StreamableConvTranspose1d(nn.Module):
    """ConvTranspose1d that trims its fixed padding (k - stride), from the right when causal.

    Args:
        trim_right_ratio: causal only; share of the trim taken from the right (1.0 = all).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        causal: bool = False,
        norm: str = "none",
        trim_right_ratio: float = 1.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= trim_right_ratio <= 1.0 or (not causal and trim_right_ratio != 1.0):
            raise ValueError(
                f"trim_right_ratio={trim_right_ratio} must lie in [0, 1] and may differ from 1 "
                "only for causal convolutions"
            )
        self.convtr = NormConvTranspose1d(
            in_channels, out_channels, kernel_size, stride, norm=norm, causal=causal
        )
        self.causal = causal
        padding_total = kernel_size - stride
        if causal:
            right = math.ceil(padding_total * trim_right_ratio)
            self.trim = (padding_total - right, right)
        else:
            self.trim = split_padding(padding_total, causal=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, in_channels, frames] -> [batch, out_channels, frames · stride]"""
        # The extra right padding of the matching encoder conv is removed by the model at the end.
        return unpad1d(self.convtr(x), self.trim)
