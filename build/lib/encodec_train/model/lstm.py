"""LSTM over a convolutional layout, with an additive skip."""

from __future__ import annotations

import torch
from torch import nn


class StreamableLSTM(nn.Module):
    """Multi-layer LSTM applied over time to a `[batch, dimension, time]` tensor.

    Args:
        dimension: input and hidden size.
        num_layers: stacked LSTM layers.
        skip: add the input to the output (the SEANet bottleneck uses it).
    """

    def __init__(self, dimension: int, num_layers: int = 2, skip: bool = True) -> None:
        super().__init__()
        self.skip = skip
        self.lstm = nn.LSTM(dimension, dimension, num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[batch, dimension, time] -> [batch, dimension, time]"""
        x = x.permute(2, 0, 1)
        y, _ = self.lstm(x)
        if self.skip:
            y = y + x
        return y.permute(1, 2, 0)
