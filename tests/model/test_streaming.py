"""Streaming encode/decode against the offline model on the whole signal.

The offline `encode` / `decode` are the independent computation: a stream fed the signal in
chunks of any sizes (hypothesis draws them) must give the same codes, and audio within 1e-5.
The emission times are checked against closed forms derived from the architecture (see
`encodec_train.model.streaming`).

Same codes, precisely: a stream computes the same sums as the offline pass, but over
chunk-sized inputs, for which PyTorch picks other kernels (summation orders), so latents agree
to ~1e-6 relative, not bit for bit. Where two codewords are that close to equidistant, either
may win; `assert_same_codes` allows exactly those ties, and checks that they are ties.
"""

from __future__ import annotations

from functools import cache

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_equivalence import assert_codes_vary, make_audio, randomize_official_layout_

from encodec_train.model import EncodecModel, encodec_24khz, encodec_48khz, encodec_tiny, streaming
from encodec_train.model.streaming import StreamingEncoder

HOP = 320
AUDIO_TOLERANCE = 1e-5
# The last encoder conv and the first decoder conv (kernel 7 at the frame rate) reflect-pad
# 6 frames on the left, mirroring latent frames 1..6: nothing comes out before 7 frames.
START_FRAMES = 7


TIE = 1e-4
"""Relative difference of two codewords' distances below which either may be chosen."""


@cache
def tiny(pad_mode: str = "reflect") -> EncodecModel:
    torch.manual_seed(1)  # the same weights whatever ran before
    return randomize_official_layout_(encodec_tiny(pad_mode=pad_mode), seed=1)


@cache
def full() -> EncodecModel:
    torch.manual_seed(2)
    return randomize_official_layout_(encodec_24khz(), seed=2)


def assert_same_codes(
    model: EncodecModel, audio: torch.Tensor, got: torch.Tensor, expected: torch.Tensor
) -> None:
    """`got` == `expected` ([batch, n_q, frames], `expected` = offline codes of `audio`),
    except at ties: in a frame whose codes differ, the first differing level must pick one of
    two codewords whose distances to the offline residual differ by under `TIE` (relative);
    the levels after it quantise another residual and may differ too. At most 5% of frames."""
    assert got.shape == expected.shape
    differing = (got != expected).any(dim=1).nonzero().tolist()
    if not differing:
        return
    assert len(differing) <= 0.05 * expected.shape[0] * expected.shape[2], differing
    with torch.no_grad():
        latent = model.encoder(audio)
    layers = model.quantizer.vq.layers
    for item, frame in differing:
        residual = latent[item, :, frame]
        level = int((got[item, :, frame] != expected[item, :, frame]).nonzero()[0])
        for earlier in range(level):
            residual = residual - layers[earlier]._codebook.embed[expected[item, earlier, frame]]
        pair = torch.stack([expected[item, level, frame], got[item, level, frame]])
        distances = (residual - layers[level]._codebook.embed[pair]).norm(dim=1)
        assert (distances[1] - distances[0]).abs() <= TIE * distances[0], (item, frame, level)


def offline(model: EncodecModel, audio: torch.Tensor, bandwidth: float):
    with torch.no_grad():
        frames = model.encode(audio, bandwidth)
        return frames[0].codes, model.decode(frames)


def pieces(x: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """`x` cut along its last axis into pieces of `sizes`, the rest as a last piece."""
    bounds = [0]
    for size in sizes:
        bounds.append(min(bounds[-1] + size, x.shape[-1]))
    bounds.append(x.shape[-1])
    return [x[..., a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def stream_codes(model, audio, bandwidth, sizes):
    """Codes pushed chunk by chunk, then flushed; the frames out after each push."""
    with model.streaming(bandwidth) as stream:
        out = [stream.encoder.push(chunk) for chunk in pieces(audio, sizes)]
        return out + [stream.encoder.flush()]


def stream_audio(model, codes, sizes):
    with model.streaming() as stream:
        out = [stream.decoder.push(chunk) for chunk in pieces(codes, sizes)]
        return out + [stream.decoder.flush()]


def assert_stream_equals_offline(model, audio, bandwidth, sample_sizes, frame_sizes):
    codes, decoded = offline(model, audio, bandwidth)
    streamed = stream_codes(model, audio, bandwidth, sample_sizes)
    assert_same_codes(model, audio, torch.cat(streamed, dim=-1), codes)
    out = torch.cat(stream_audio(model, codes, frame_sizes), dim=-1)
    assert out.shape == decoded.shape == (audio.shape[0], 1, codes.shape[-1] * HOP)
    assert (out - decoded).abs().max().item() <= AUDIO_TOLERANCE
    return codes, streamed


chunk_sizes = st.lists(st.integers(0, 900), min_size=1, max_size=10)


@settings(max_examples=12, deadline=None)
@given(
    sizes=chunk_sizes,
    frame_sizes=st.lists(st.integers(0, 9), max_size=8),
    bandwidth=st.sampled_from([1.5, 3.0, 6.0]),
    seed=st.integers(0, 3),
)
def test_tiny_stream_equals_offline_for_any_chunks(sizes, frame_sizes, bandwidth, seed):
    length = max(1, sum(sizes))
    audio = make_audio(24_000, 1, length, batch=2, seed=seed)
    codes, streamed = assert_stream_equals_offline(tiny(), audio, bandwidth, sizes, frame_sizes)
    assert codes.shape[-1] == -(-length // HOP)  # ceil(T / hop) frames
    # Before the flush, frame t comes out with its last sample, once 7 frames can start.
    received = 0
    for chunk_size, out in zip([c.shape[-1] for c in pieces(audio, sizes)], streamed, strict=False):
        emitted_before = (received // HOP) if received >= START_FRAMES * HOP else 0
        received += chunk_size
        expected = (received // HOP) if received >= START_FRAMES * HOP else 0
        assert out.shape[-1] == expected - emitted_before


@pytest.mark.slow
def test_full_24khz_stream_equals_offline():
    audio = make_audio(24_000, 1, 24_000 // 2 + 123, batch=1, seed=5)
    sizes = [480] * 10 + [1, 319, 2000, 7]  # 20 ms chunks, then odd ones
    for bandwidth in (1.5, 24.0):
        codes, _ = assert_stream_equals_offline(full(), audio, bandwidth, sizes, [1, 5, 0, 3, 30])
        assert_codes_vary(codes)


def test_zero_padding_streams_with_one_frame_of_latency():
    model = tiny("constant")
    audio = make_audio(24_000, 1, 3 * HOP + 50, batch=1)
    with model.streaming(3.0) as stream:
        assert stream.encoder.push(audio[..., : HOP - 1]).shape[-1] == 0
        assert stream.encoder.push(audio[..., HOP - 1 : HOP]).shape[-1] == 1
        codes = stream.encoder.push(audio[..., HOP:])
        assert codes.shape[-1] == 2
        assert stream.decoder.push(codes[..., :1]).shape[-1] == HOP
    latency = model.streaming_latency()
    assert (latency.first_codes_samples, latency.first_audio_frames) == (HOP, 1)
    assert latency.first_audio_ms == pytest.approx(1000 * HOP / 24_000)
    assert_stream_equals_offline(model, audio, 3.0, [100, 700, 5], [2, 1])


def test_latency_of_the_official_layout():
    latency = tiny().streaming_latency()
    assert latency.frame_samples == HOP and latency.frame_ms == pytest.approx(13.333, abs=1e-3)
    assert latency.first_codes_samples == START_FRAMES * HOP
    assert latency.first_audio_frames == START_FRAMES
    assert latency.first_audio_ms == pytest.approx(1000 * START_FRAMES * HOP / 24_000)


def test_streams_start_empty_and_do_not_share_state():
    model = tiny()
    a = make_audio(24_000, 1, 4000, batch=1, seed=7)
    b = make_audio(24_000, 1, 3000, batch=1, seed=8)
    expected_a, expected_b = offline(model, a, 6.0)[0], offline(model, b, 6.0)[0]
    with model.streaming(6.0) as first, model.streaming(6.0) as second:
        out_a, out_b = [], []
        for chunk_a, chunk_b in zip(pieces(a, [333] * 12), pieces(b, [250] * 12), strict=True):
            out_a.append(first.encoder.push(chunk_a))
            out_b.append(second.encoder.push(chunk_b))
        out_a.append(first.encoder.flush())
        out_b.append(second.encoder.flush())
    assert_same_codes(model, a, torch.cat(out_a, -1), expected_a)
    assert_same_codes(model, b, torch.cat(out_b, -1), expected_b)
    # A new stream after those starts from nothing.
    assert_same_codes(model, b, torch.cat(stream_codes(model, b, 6.0, [900]), -1), expected_b)


def test_48khz_model_refuses_to_stream():
    with pytest.raises(ValueError, match="cannot stream: it is not causal.*1-second segments"):
        with encodec_48khz().streaming():
            pass


def test_misuse_is_refused_clearly():
    model = tiny()
    with model.streaming() as stream:
        with pytest.raises(ValueError, match="nothing was pushed"):
            stream.encoder.flush()
    with model.streaming() as stream:
        stream.encoder.push(torch.zeros(2, 1, 10))
        with pytest.raises(ValueError, match=r"does not continue.*\[2, 1\]"):
            stream.encoder.push(torch.zeros(1, 1, 10))
        with pytest.raises(ValueError, match="2 channel"):
            StreamingEncoder(model).push(torch.zeros(1, 2, 10))
        with pytest.raises(ValueError, match="NaN"):
            stream.encoder.push(torch.full((2, 1, 3), float("nan")))
        stream.encoder.flush()
        with pytest.raises(RuntimeError, match="flushed"):
            stream.encoder.push(torch.zeros(2, 1, 10))
    with pytest.raises(RuntimeError, match="closed"):
        stream.decoder.push(torch.zeros(2, 4, 1, dtype=torch.long))
    with model.streaming() as stream:
        with pytest.raises(
            ValueError, match=r"codes must lie in \[0, 32\), got values from 0 to 32"
        ):
            stream.decoder.push(torch.tensor([[[0], [32]]]))


def test_transposed_convs_trimmed_on_both_sides_hold_samples_for_the_flush():
    torch.manual_seed(3)
    model = randomize_official_layout_(encodec_tiny(trim_right_ratio=0.5), seed=3)
    audio = make_audio(24_000, 1, 4000, batch=2)
    codes, _ = assert_stream_equals_offline(model, audio, 3.0, [100, 1000, 7, 2000], [1, 3, 0, 5])
    with model.streaming() as stream:
        stream.decoder.push(codes)
        assert stream.decoder.flush().shape[-1] > 0  # the left-trimmed samples at the end


def test_a_stream_uses_the_weights_as_they_are_when_it_opens():
    """Streams share weights prepared once per layer; changing the model's weights in place
    (an optimizer step, `load_state_dict`) must reach the next stream."""
    model = randomize_official_layout_(encodec_tiny(), seed=6).for_inference()
    audio = make_audio(24_000, 1, 3000, batch=1, seed=3)
    before, _ = assert_stream_equals_offline(model, audio, 3.0, [480] * 7, [3, 4])
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(0.9)
        for layer in model.quantizer.vq.layers:
            layer._codebook.embed.mul_(0.5)
    after, _ = assert_stream_equals_offline(model, audio, 3.0, [480] * 7, [3, 4])
    assert (after != before).any()


def test_a_stream_off_the_kernels_equals_offline(monkeypatch):
    """The Numba kernels take CPU float32; a stream on another device runs the same layers
    through PyTorch. Forced here on the CPU."""
    monkeypatch.setattr(streaming, "_on_kernels", lambda x: False)
    audio = make_audio(24_000, 1, 6000, batch=2, seed=4)
    codes, _ = assert_stream_equals_offline(tiny(), audio, 3.0, [480] * 5 + [1, 900], [2, 1, 5])
    assert_codes_vary(codes)
