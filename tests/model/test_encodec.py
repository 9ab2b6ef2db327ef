"""EncodecModel: input errors that name the problem, the presets' sizes against the official
models, chunking and overlap-add against hand-computed values, metrics over chunks, and the
generator of the codebooks' draws. (Model files are in test_checkpoint.py.)"""

from __future__ import annotations

import math

import pytest
import torch

from encodec_train.model import EncodecModel, encodec_24khz, encodec_48khz, encodec_tiny
from encodec_train.model.encodec import linear_overlap_add


@pytest.fixture(scope="module")
def model_24khz() -> EncodecModel:
    return encodec_24khz().eval()


@pytest.fixture(scope="module")
def model_48khz() -> EncodecModel:
    return encodec_48khz().eval()


def chunked_tiny(**overrides) -> EncodecModel:
    """The tiny codec with 48 kHz-style processing: 0.1 s chunks (2400 samples, stride 2376),
    per-chunk normalisation, time-group norm, stereo."""
    config = dict(
        channels=2, causal=False, norm="time_group_norm", normalize=True, segment_seconds=0.1
    )
    return encodec_tiny(**{**config, **overrides}).eval()


# -- input errors ----------------------------------------------------------------------

BAD_INPUTS = {
    "2-D input": (torch.zeros(1, 2400), None, None, r"\[batch, channels, time\].*\(1, 2400\)"),
    "wrong channel count": (torch.zeros(1, 2, 2400), None, None, r"2 channel.*expects 1"),
    "wrong sample rate": (torch.zeros(1, 1, 2400), None, 16_000, r"16000 Hz.*24000 Hz"),
    "unknown bandwidth": (
        torch.zeros(1, 1, 2400),
        5.0,
        None,
        r"bandwidth=5\.0 kbps.*\[1\.5, 3\.0, 6\.0, 12\.0, 24\.0\]",
    ),
    "empty audio": (torch.zeros(1, 1, 0), None, None, r"empty"),
    "empty batch": (torch.zeros(0, 1, 2400), None, None, r"empty"),
    "NaN audio": (torch.tensor([[[0.0, float("nan"), 0.0]]]), None, None, r"NaN"),
    "infinite audio": (torch.tensor([[[0.0, float("inf"), 0.0]]]), None, None, r"infinite"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
@pytest.mark.parametrize("method", ["encode", "forward"])
def test_bad_input_raises_an_error_naming_the_problem(model_24khz, case, method):
    x, bandwidth, sample_rate, message = BAD_INPUTS[case]
    call = model_24khz.encode if method == "encode" else model_24khz
    with pytest.raises(ValueError, match=message):
        call(x, bandwidth, sample_rate=sample_rate)


def test_mono_audio_into_the_stereo_model(model_48khz):
    with pytest.raises(ValueError, match=r"1 channel.*expects 2"):
        model_48khz.encode(torch.zeros(1, 1, 4800))
    with pytest.raises(ValueError, match=r"bandwidth=1\.5 kbps.*\[3\.0, 6\.0, 12\.0, 24\.0\]"):
        model_48khz.encode(torch.zeros(1, 2, 4800), 1.5)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(channels=3), r"channels=3"),
        (dict(target_bandwidths=[]), r"target_bandwidths is empty"),
        (dict(target_bandwidths=[0.1]), r"bandwidth 0\.1 kbps is below one codebook"),
        (dict(codebook_size=48), r"codebook_size=48 must be a power of 2"),
        (dict(norm="batch_norm"), r"norm='batch_norm'"),
        (dict(norm="time_group_norm", causal=True), r"cannot be causal"),
    ],
)
def test_bad_configuration_raises_an_error_naming_it(overrides, message):
    with pytest.raises(ValueError, match=message):
        encodec_tiny(**overrides)


def test_a_bandwidth_that_is_not_a_whole_number_of_codebooks_is_refused():
    """5 kbps at 0.75 kbps per codebook (10 bits × 75 frames/s) is 6.67 codebooks."""
    message = (
        r"bandwidth 5\.0 kbps is not a whole number of codebooks.*"
        r"4\.5 kbps \(6 codebooks\) and 5\.25 kbps \(7 codebooks\)"
    )
    with pytest.raises(ValueError, match=message):
        encodec_24khz(target_bandwidths=[1.5, 5.0])
    # the official package's rounding, on request
    model = encodec_24khz(target_bandwidths=[1.5, 5.0], strict_bandwidths=False)
    assert (model.num_codebooks(5.0), model.quantizer.n_q) == (6, 6)


# -- presets ---------------------------------------------------------------------------


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_24khz_preset_matches_the_official_model(model_24khz):
    assert count_parameters(model_24khz) == 14_851_810
    assert len(model_24khz.state_dict()) == 252
    assert (model_24khz.sample_rate, model_24khz.channels) == (24_000, 1)
    assert (model_24khz.hop_length, model_24khz.frame_rate) == (320, 75)
    assert model_24khz.quantizer.n_q == 32
    assert model_24khz.target_bandwidths == [1.5, 3.0, 6.0, 12.0, 24.0]
    assert model_24khz.segment_length is None


def test_48khz_preset_matches_the_official_model(model_48khz):
    encodec = pytest.importorskip("encodec")
    ref = encodec.EncodecModel.encodec_model_48khz(pretrained=False)
    assert count_parameters(model_48khz) == count_parameters(ref)
    assert len(model_48khz.state_dict()) == 224 == len(ref.state_dict())
    assert (model_48khz.sample_rate, model_48khz.channels) == (48_000, 2)
    assert (model_48khz.hop_length, model_48khz.frame_rate) == (320, 150)
    assert model_48khz.quantizer.n_q == 16
    assert model_48khz.target_bandwidths == [3.0, 6.0, 12.0, 24.0]
    # 1 s chunks with 1% overlap: stride int(0.99 · 48000)
    assert (model_48khz.segment_length, model_48khz.segment_stride) == (48_000, 47_520)


def test_24khz_parameter_count_equals_the_official_model(model_24khz):
    encodec = pytest.importorskip("encodec")
    ref = encodec.EncodecModel.encodec_model_24khz(pretrained=False)
    assert count_parameters(ref) == count_parameters(model_24khz)
    assert len(ref.state_dict()) == 252


@pytest.mark.parametrize(
    "preset, expected",
    [
        ("24khz", {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32, None: 32}),
        ("48khz", {3.0: 2, 6.0: 4, 12.0: 8, 24.0: 16, None: 16}),
    ],
)
def test_model_bandwidths_select_the_paper_number_of_codebooks(preset, expected, request):
    model = request.getfixturevalue(f"model_{preset}")
    for bandwidth, codebooks in expected.items():
        assert model.num_codebooks(bandwidth) == codebooks


def test_tiny_preset_bandwidths_are_whole_numbers_of_codebooks():
    """32 codes (5 bits) × 75 frames/s = 0.375 kbps per codebook: 1.5, 3 and 6 kbps are 4, 8
    and 16 codebooks exactly."""
    model = encodec_tiny()
    assert model.target_bandwidths == [1.5, 3.0, 6.0]
    assert [model.num_codebooks(b) for b in model.target_bandwidths] == [4, 8, 16]
    assert model.quantizer.n_q == 16


# -- chunking and overlap-add ----------------------------------------------------------


def test_linear_overlap_add_by_hand():
    """Frames of 4 samples, stride 2: triangular weights (0.2, 0.4, 0.4, 0.2); where the
    frames overlap, (0.4·1 + 0.2·3) / 0.6 and (0.2·1 + 0.4·3) / 0.6."""
    out = linear_overlap_add([torch.ones(1, 4), 3 * torch.ones(1, 4)], stride=2)
    expected = torch.tensor([[1.0, 1.0, 5 / 3, 7 / 3, 3.0, 3.0]])
    torch.testing.assert_close(out, expected)


def test_linear_overlap_add_keeps_a_shorter_last_frame_and_single_coverage():
    first, last = torch.randn(2, 3, 10), torch.randn(2, 3, 4)
    out = linear_overlap_add([first, last], stride=8)
    assert out.shape == (2, 3, 12)
    torch.testing.assert_close(out[..., :8], first[..., :8])  # covered once: unchanged
    torch.testing.assert_close(out[..., 10:], last[..., 2:])
    # overlap: weights (0.5 - |t - 0.5|) at t = 9/11, 10/11 of the first frame and 1/11,
    # 2/11 of the second
    w_first = torch.tensor([2 / 11, 1 / 11])
    w_last = torch.tensor([1 / 11, 2 / 11])
    expected = (w_first * first[..., 8:] + w_last * last[..., :2]) / (w_first + w_last)
    torch.testing.assert_close(out[..., 8:10], expected)


def test_chunks_frames_and_lengths_by_hand():
    model = chunked_tiny()
    assert (model.segment_length, model.segment_stride) == (2400, 2376)
    length = 2376 * 2 + 248  # chunks at 0, 2376, 4752: 2400, 2400 and 248 samples
    x = 0.1 * torch.randn(2, 2, length)
    chunks = model._chunks(x)
    assert [c.shape[-1] for c in chunks] == [2400, 2400, 248]
    assert torch.equal(chunks[1], x[..., 2376:4776])
    with torch.inference_mode():
        frames = model.encode(x, 3.0)
        # 3 kbps at 5 bits (32 codes) × 75 frames/s: 8 codebooks; ceil(length / 320) frames
        assert [tuple(f.codes.shape) for f in frames] == [(2, 8, 8), (2, 8, 8), (2, 8, 1)]
        decoded = model.decode(frames)
        # overlap-add of 2560-, 2560- and 320-sample chunks placed 2376 apart
        assert decoded.shape == (2, 2, 2376 * 2 + 320)
        assert model(x, 3.0).audio.shape == x.shape


def test_per_chunk_scales_are_the_rms_of_the_channel_mean():
    model = chunked_tiny()
    x = 0.1 * torch.randn(2, 2, 3000)
    x[1] *= 5.0
    x[..., 2376:] *= 0.01  # the second chunk is quieter
    with torch.inference_mode():
        frames = model.encode(x, 1.5)
    for frame, offset in zip(frames, (0, 2376), strict=True):
        mono = x[..., offset : offset + 2400].double().mean(dim=1)
        expected = 1e-8 + mono.pow(2).mean(dim=-1, keepdim=True).sqrt()
        assert frame.scale.shape == (2, 1)
        torch.testing.assert_close(frame.scale.double(), expected, rtol=1e-5, atol=0)


def test_silence_gives_a_finite_reconstruction():
    model = chunked_tiny()
    x = torch.zeros(1, 2, 3000)
    with torch.inference_mode():
        frames = model.encode(x, 1.5)
        audio = model(x, 1.5).audio
    assert all(f.scale.item() == pytest.approx(1e-8) for f in frames)
    assert torch.isfinite(audio).all()


def test_unchunked_model_encodes_in_one_piece():
    model = encodec_tiny().eval()
    x = 0.1 * torch.randn(1, 1, 1000)
    with torch.inference_mode():
        frames = model.encode(x)  # None: every codebook
        assert len(frames) == 1 and frames[0].scale is None
        assert frames[0].codes.shape == (1, model.quantizer.n_q, math.ceil(1000 / 320))
        assert model.decode(frames).shape == (1, 1, 4 * 320)
        assert model(x).audio.shape == x.shape


# -- training: metrics over chunks, random draws ------------------------------------------


def test_a_training_segment_of_one_chunk_is_one_codebook_update(monkeypatch):
    """Paper §4.2: 1 s chunks for the 48 kHz model. A 1 s training segment once became a
    48,000-sample chunk plus a 480-sample tail: two codebook updates per step (one on a few
    vectors) and the tail's metrics logged. Now: one update over the whole segment."""
    model = chunked_tiny().train()
    seen = []
    quantize = model.quantizer.forward

    def recording(latent, n_q, generator=None):
        seen.append(latent.shape[-1])
        return quantize(latent, n_q, generator=generator)

    monkeypatch.setattr(model.quantizer, "forward", recording)
    segment = 0.1 * torch.randn(2, 2, model.segment_length)
    out = model(segment, 3.0)
    assert seen == [-(-model.segment_length // 320)]  # one chunk: ceil(2400 / 320) frames
    assert out.audio.shape == segment.shape and len(out.frames) == 1
    # Inference still follows the official chunking (codes identical to the reference).
    with torch.inference_mode():
        assert len(model.encode(segment, 3.0)) == 2


def test_metrics_of_several_chunks_are_averaged(monkeypatch):
    """Each chunk is one codebook update; the step's metrics are the means over the chunks,
    not the last chunk's values."""
    model = chunked_tiny().train()
    quantize = model.quantizer.forward
    values = iter([1.0, 4.0, 10.0])

    def with_known_metrics(latent, n_q, generator=None):
        out = quantize(latent, n_q, generator=generator)
        value = next(values)
        out.metrics = {"codebook_usage/0": torch.tensor(value), "other": torch.tensor(-value)}
        return out

    monkeypatch.setattr(model.quantizer, "forward", with_known_metrics)
    x = 0.1 * torch.randn(1, 2, 2376 * 2 + 248)  # three chunks
    metrics = model(x, 3.0).metrics
    assert metrics["codebook_usage/0"].item() == pytest.approx(5.0)
    assert metrics["other"].item() == pytest.approx(-5.0)


def test_training_metrics_have_every_level_and_eval_mode_has_none():
    model = chunked_tiny().train()
    x = 0.1 * torch.randn(1, 2, 3000)  # two chunks
    metrics = model(x, 3.0).metrics
    levels = range(model.num_codebooks(3.0))
    names = ("codebook_usage", "codebook_perplexity", "codebook_replaced")
    assert set(metrics) == {f"{name}/{level}" for name in names for level in levels}
    assert all(value.dim() == 0 for value in metrics.values())
    with torch.inference_mode():
        assert model.eval()(x, 3.0).metrics == {}


def test_forward_draws_the_codebooks_from_the_given_generator_only():
    """k-means and dead-code draws of a two-chunk training step come from the generator:
    the same generator seed gives the same codebooks whatever torch's default generator holds,
    and the default generator is left as it was."""
    x = 0.1 * torch.randn(2, 2, 3000, generator=torch.Generator().manual_seed(1))
    codebooks = []
    for global_seed in (10, 20):
        torch.manual_seed(0)
        model = chunked_tiny().train()  # the same initial weights
        torch.manual_seed(global_seed)
        global_state = torch.get_rng_state()
        model(x, 6.0, generator=torch.Generator().manual_seed(3))
        assert torch.equal(torch.get_rng_state(), global_state)
        codebooks.append(model.quantizer.state_dict())
    for key in codebooks[0]:
        assert torch.equal(codebooks[0][key], codebooks[1][key]), key
