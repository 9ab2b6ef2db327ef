"""Objective quality metrics as pure functions over `[batch, channels, time]` tensors."""

from __future__ import annotations

import torch


def si_snr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale-invariant signal-to-noise ratio in dB per item, [batch] (channels flattened).

    SI-SNR = 10 log10(‖s‖² / ‖e‖²) with s the projection of the zero-mean prediction on the
    zero-mean target and e the rest (Le Roux et al., 2019).
    """
    pred = pred.reshape(pred.shape[0], -1)
    target = target.reshape(target.shape[0], -1)
    pred = pred - pred.mean(dim=-1, keepdim=True)
    target = target - target.mean(dim=-1, keepdim=True)
    scale = (pred * target).sum(-1, keepdim=True) / (target.pow(2).sum(-1, keepdim=True) + eps)
    projection = scale * target
    noise = pred - projection
    return 10 * torch.log10((projection.pow(2).sum(-1) + eps) / (noise.pow(2).sum(-1) + eps))
