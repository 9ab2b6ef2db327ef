"""Initialisations: unit-norm filters and zero biases, and what they change at step 0."""

import pytest
import torch

from encodec_train.discriminator import MultiScaleSTFTDiscriminator
from encodec_train.model import EncodecModel
from encodec_train.model.init import initialize_


def _tiny(init: str) -> EncodecModel:
    torch.manual_seed(0)
    return EncodecModel(
        target_bandwidths=[1.5], n_filters=4, dimension=16, lstm_layers=1, codebook_size=32,
        init=init,
    )  # fmt: skip


def test_unit_norm_gives_unit_filters_and_zero_biases_everywhere():
    model = _tiny("unit_norm")
    convs = [
        m for m in model.modules() if isinstance(m, (torch.nn.Conv1d, torch.nn.ConvTranspose1d))
    ]
    assert len(convs) > 10
    for conv in convs:
        weight = conv.weight.detach()  # the weight-norm parametrization computes g · v / ‖v‖
        norms = weight.flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        assert not conv.bias.any()
    for lstm in [m for m in model.modules() if isinstance(m, torch.nn.LSTM)]:
        assert all(not p.any() for n, p in lstm.named_parameters() if n.startswith("bias"))


def test_unit_norm_latent_depends_on_the_input_and_pytorch_init_barely_does():
    """The measured cause of the demo's collapse: with PyTorch's init the encoder output is
    nearly all bias (its value for silence), with unit_norm it is all signal."""
    audio = 0.1 * torch.randn(2, 1, 24_000, generator=torch.Generator().manual_seed(1))
    shares = {}
    for init in ("pytorch", "unit_norm"):
        encoder = _tiny(init).encoder
        with torch.no_grad():
            latent, silent = encoder(audio), encoder(torch.zeros_like(audio))
        shares[init] = float((latent - silent).std() / latent.std())
    assert shares["unit_norm"] == pytest.approx(1.0)
    assert shares["pytorch"] < 0.1


def test_discriminator_unit_norm_and_unknown_init():
    discriminator = MultiScaleSTFTDiscriminator(filters=4, n_ffts=[256], init="unit_norm")
    for conv in [m for m in discriminator.modules() if isinstance(m, torch.nn.Conv2d)]:
        norms = conv.weight.detach().flatten(1).norm(dim=1)
        torch.testing.assert_close(norms, torch.ones_like(norms))
        assert not conv.bias.any()
    with pytest.raises(ValueError, match="init='xavier'"):
        initialize_(discriminator, "xavier")
