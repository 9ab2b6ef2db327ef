"""Codecs with random weights and test signals for the compression tests."""

import torch

from encodec_train.model import EncodecModel


def with_codebooks(model: EncodecModel, seconds: float = 0.5, seed: int = 0) -> EncodecModel:
    """`model` after one training-mode pass (k-means fills every codebook from its latents,
    so the codes vary; random models start with all-zero codebooks), in eval mode."""
    gen = torch.Generator().manual_seed(seed)
    audio = 0.1 * torch.randn(2, model.channels, int(seconds * model.sample_rate), generator=gen)
    model.train()
    with torch.no_grad():
        model(audio, generator=gen)
    return model.eval()


def chirp(model: EncodecModel, length: int, seed: int = 0) -> torch.Tensor:
    """[channels, length]: a chirp plus noise, a different draw per channel."""
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length) / model.sample_rate
    tone = 0.3 * torch.sin(2 * torch.pi * (100 + 2000 * t) * t)
    return tone + 0.05 * torch.randn(model.channels, length, generator=gen)
