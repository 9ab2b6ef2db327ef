"""The inference copy (folded weight norm, fast ELU, optional torch.compile) against the
weight-normed model it was made from."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_equivalence import make_audio, randomize_official_layout_
from test_streaming import assert_same_codes

from encodec_train.model import encodec_tiny
from encodec_train.model.inference import InferenceELU
from encodec_train.model.streaming import _ONEDNN, _Linear

AUDIO_TOLERANCE = 1e-5


@pytest.mark.parametrize("alpha", [1.0, 0.5, 1.5])
def test_inference_elu_is_elu(alpha):
    x = torch.linspace(-20, 20, 10_001)
    assert (InferenceELU(alpha)(x) - F.elu(x, alpha)).abs().max().item() < 1e-6


@pytest.mark.parametrize("pack", [True, False])
@pytest.mark.parametrize("rows", [1, 2, 12])
def test_a_streams_products_equal_a_linear_layer(pack, rows):
    generator = torch.Generator().manual_seed(rows)
    weight, bias = torch.randn(300, 200, generator=generator), torch.randn(300, generator=generator)
    x = torch.randn(rows, 200, generator=generator)
    for b in (bias, None):
        linear = _Linear.of(weight, b, pack=pack)
        assert linear.packed == (pack and _ONEDNN)
        expected = F.linear(x.double(), weight.double(), None if b is None else b.double())
        assert (linear(x).double() - expected).abs().max().item() < 1e-4


def test_folded_copy_matches_the_weight_normed_model_and_leaves_it_intact():
    model = randomize_official_layout_(encodec_tiny(), seed=3)
    keys = list(model.state_dict())
    fast = model.for_inference()
    audio = make_audio(24_000, 1, 4321, batch=2)
    with torch.no_grad():
        expected = model.encode(audio, 3.0)
        got = fast.encode(audio, 3.0)
        assert_same_codes(model, audio, got[0].codes, expected[0].codes)
        assert (fast.decode(got) - model.decode(expected)).abs().max().item() < AUDIO_TOLERANCE
    assert not any("parametrizations" in k for k in fast.state_dict())
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    # The original keeps its weight norm, its checkpoint names and its gradients.
    assert list(model.state_dict()) == keys and any("parametrizations" in k for k in keys)
    model.train()
    model(audio, 3.0).audio.sum().backward()
    assert model.encoder.model[0].conv.conv.parametrizations.weight.original1.grad is not None


def test_stream_over_the_folded_copy_equals_the_original_offline():
    model = randomize_official_layout_(encodec_tiny(), seed=4)
    audio = make_audio(24_000, 1, 3000, batch=1, seed=2)
    with torch.no_grad():
        codes = model.encode(audio, 6.0)[0].codes
    with model.for_inference().streaming(6.0) as stream:
        pushed = [stream.encoder.push(audio[..., i : i + 480]) for i in range(0, 3000, 480)]
        streamed = torch.cat([*pushed, stream.encoder.flush()], dim=-1)
    assert_same_codes(model, audio, streamed, codes)


@pytest.mark.slow
def test_compiled_copy_agrees_with_eager():
    model = randomize_official_layout_(encodec_tiny(), seed=5)
    eager, compiled = model.for_inference(), model.for_inference(compile=True)
    audio = make_audio(24_000, 1, 4000, batch=1)
    with torch.inference_mode():
        expected = eager.encode(audio, 6.0)
        got = compiled.encode(audio, 6.0)
        assert_same_codes(model, audio, got[0].codes, expected[0].codes)
        difference = (compiled.decode(got) - eager.decode(expected)).abs().max().item()
    assert difference < AUDIO_TOLERANCE
