"""Codecs and entropy models with random weights for the compression tests."""

import pytest
import torch
from compression_helpers import with_codebooks

from encodec_train.model import EncodecModel, encodec_tiny
from encodec_train.model.lm import EntropyModel


@pytest.fixture(scope="package")
def tiny_codec() -> EncodecModel:
    torch.manual_seed(0)
    return with_codebooks(encodec_tiny())


@pytest.fixture(scope="package")
def tiny_lm(tiny_codec) -> EntropyModel:
    """A small entropy model for the tiny codec (16 codebooks of 32 entries), random weights
    scaled up so its distributions are far from uniform."""
    torch.manual_seed(1)
    lm = EntropyModel(
        tiny_codec.quantizer.n_q,
        tiny_codec.quantizer.codebook_size,
        dim=32,
        num_heads=4,
        num_layers=2,
        feed_forward=64,
        past_context=20,
    ).eval()
    with torch.no_grad():
        for head in lm.linears:
            head.weight.mul_(8)
    return lm
