"""Degradations with a known signal-to-noise ratio."""

from __future__ import annotations

import torch


def with_noise(audio: torch.Tensor, snr_db: float, seed: int = 0) -> torch.Tensor:
    """`audio` plus white noise at `snr_db` (power ratio over the whole clip)."""
    noise = torch.randn(audio.shape, generator=torch.Generator().manual_seed(seed))
    scale = audio.pow(2).mean().sqrt() / noise.pow(2).mean().sqrt() * 10 ** (-snr_db / 20)
    return audio + scale * noise
