"""Our generator against the reference implementations, with the same random weights.

The official `encodec` package (24 and 48 kHz) and transformers' `EncodecModel` must give the
same codes, scales and audio as ours at every bandwidth. Random models start with all-zero
codebooks (every frame would map to code 0 and prove nothing), so each codebook is first filled
with vectors drawn from the model's own latents; the tests assert that the codes vary.

The largest differences measured are printed (run with `-s`) and recorded as test properties.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from torch import nn

from encodec_train import convert
from encodec_train.model import EncodecModel, encodec_24khz, encodec_48khz, encodec_tiny

encodec = pytest.importorskip("encodec")

HOP = 320
AUDIO_TOLERANCE = 1e-5
# Codebooks used at each bandwidth, from n_q = floor(kbps · 1000 / (10 bits · frame rate)).
N_Q_24KHZ = {1.5: 2, 3.0: 4, 6.0: 8, 12.0: 16, 24.0: 32}
N_Q_48KHZ = {3.0: 2, 6.0: 4, 12.0: 8, 24.0: 16}


# -- signals and random weights --------------------------------------------------------


def make_audio(
    sample_rate: int, channels: int, length: int, batch: int = 2, seed: int = 0
) -> torch.Tensor:
    """[batch, channels, length] of white noise and of a chirp with clicks.

    With batch 2, item 0 is noise and item 1 the louder chirp (so the 48 kHz model's per-item
    scales differ); with batch 1 the channels alternate noise / chirp. A later channel of the
    same kind is a different draw or a delayed, quieter copy, so stereo channels differ.
    """
    gen = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float64) / sample_rate
    duration = max(length / sample_rate, 1e-3)
    f0, f1 = 50.0, sample_rate / 2.5
    chirp = 0.5 * torch.sin(2 * math.pi * (f0 * t + (f1 - f0) * t**2 / (2 * duration)))
    clicks = torch.zeros(length, dtype=torch.float64)
    clicks[:: max(1, sample_rate // 20)] = 0.9
    structured = (chirp + clicks).float()
    items = []
    for item in range(batch):
        rows = []
        for channel in range(channels):
            noise = item == 0 if batch > 1 else channel % 2 == 0
            if noise:
                rows.append(0.1 * torch.randn(length, generator=gen))
            else:
                rows.append(0.7**channel * torch.roll(structured, 13 * channel))
        items.append(torch.stack(rows))
    return torch.stack(items)


@torch.no_grad()
def randomize_(
    encoder: nn.Module,
    parameters: Sequence[nn.Parameter],
    codebooks: Sequence[nn.Module],
    sample_rate: int,
    channels: int,
    seed: int,
) -> None:
    """Perturb every parameter (so weight-norm gains and GroupNorm affines are not at their
    defaults) and fill each codebook with Gaussian vectors shaped like the residual it sees
    (per-dimension mean and spread of the model's own latents minus the earlier levels)."""
    gen = torch.Generator().manual_seed(seed)
    for p in parameters:
        noise = torch.randn(p.shape, generator=gen)
        p.mul_(1 + 0.1 * noise).add_(0.01 * torch.randn(p.shape, generator=gen))
    latent = encoder(make_audio(sample_rate, channels, sample_rate // 4, seed=seed + 1))
    residual = latent.transpose(1, 2).reshape(-1, latent.shape[1]).double()
    for codebook in codebooks:
        shape = codebook.embed.shape
        noise = torch.randn(shape, generator=gen, dtype=torch.float64)
        embed = residual.mean(dim=0) + residual.std(dim=0) * noise
        codebook.embed.copy_(embed)
        codebook.embed_avg.copy_(embed)
        codebook.cluster_size.fill_(1.0)
        codebook.inited.fill_(1.0)
        residual = residual - embed[torch.cdist(residual, embed).argmin(dim=1)]


def randomize_official_layout_(model: nn.Module, seed: int) -> nn.Module:
    """`randomize_` for the official package's models and ours (same module layout)."""
    randomize_(
        model.encoder,
        list(model.parameters()),
        [layer._codebook for layer in model.quantizer.vq.layers],
        model.sample_rate,
        model.channels,
        seed,
    )
    return model.eval()


def randomize_hf_(model: nn.Module, seed: int) -> nn.Module:
    config = model.config
    randomize_(
        model.encoder,
        list(model.parameters()),
        [layer.codebook for layer in model.quantizer.layers],
        config.sampling_rate,
        config.audio_channels,
        seed,
    )
    return model.eval()


# -- comparisons -----------------------------------------------------------------------


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}"
    return (a - b).abs().max().item()


def assert_codes_vary(codes: torch.Tensor) -> None:
    """codes [batch, n_q, frames]: a comparison of constant codes would prove nothing."""
    for level in range(codes.shape[1]):
        assert codes[:, level].unique().numel() > 1, f"level {level}: every frame has one code"
    assert codes[:, 0].unique().numel() >= 8


def report(record_property, name: str, diffs: dict[str, float]) -> None:
    worst = max(diffs.values())
    print(
        f"\n{name}: max |difference| {worst:.3g}  "
        + ", ".join(f"{k}={v:.3g}" for k, v in diffs.items())
    )
    record_property(f"{name}_max_abs_diff", worst)
    assert worst <= AUDIO_TOLERANCE, f"{name}: {diffs}"


def compare_with_official(
    ours: EncodecModel, ref: nn.Module, x: torch.Tensor, n_q: dict[float, int]
) -> dict[str, float]:
    """Codes, scales, decoded audio and `forward` at each bandwidth (`n_q`: bandwidth →
    expected codebooks); returns the differences (codes must be identical)."""
    diffs = {}
    with torch.inference_mode():
        for bw in n_q:
            ref.set_target_bandwidth(bw)
            ref_frames = ref.encode(x)
            ref_audio = ref.decode(ref_frames)
            frames = ours.encode(x, bw)
            assert len(frames) == len(ref_frames)
            for (ref_codes, ref_scale), frame in zip(ref_frames, frames, strict=True):
                assert frame.codes.shape == ref_codes.shape
                assert frame.codes.shape[1] == n_q[bw]
                assert torch.equal(frame.codes, ref_codes), f"codes differ at {bw} kbps"
                if ref_scale is None:
                    assert frame.scale is None
                else:
                    diffs[f"scale@{bw}"] = max_diff(frame.scale, ref_scale)
            assert_codes_vary(frames[0].codes)
            diffs[f"decode@{bw}"] = max_diff(ours.decode(frames), ref_audio)
            diffs[f"forward@{bw}"] = max_diff(ours(x, bw).audio, ref_audio[..., : x.shape[-1]])
    return diffs


def expected_scales(x: torch.Tensor, segment: int, stride: int) -> list[torch.Tensor]:
    """1e-8 + RMS of the channel mean of each chunk, in float64, [batch, 1] per chunk."""
    scales = []
    for offset in range(0, x.shape[-1], stride):
        mono = x[..., offset : offset + segment].double().mean(dim=1)
        scales.append((1e-8 + mono.pow(2).mean(dim=-1).sqrt()).view(-1, 1))
    return scales


# -- the official package --------------------------------------------------------------


def official_pair(tmp_path_factory, preset: str, seed: int):
    """(reference with random weights, ours loaded through `convert.load_official` from the
    reference's saved `.th`, that file)."""
    torch.manual_seed(0)
    factory = getattr(encodec.EncodecModel, f"encodec_model_{preset}")
    ref = randomize_official_layout_(factory(pretrained=False), seed=seed)
    path = tmp_path_factory.mktemp("official") / f"encodec_{preset}-random.th"
    torch.save(ref.state_dict(), path)
    return ref, convert.load_official(path), path


@pytest.fixture(scope="module")
def official_24khz(tmp_path_factory) -> tuple[nn.Module, EncodecModel, Path]:
    return official_pair(tmp_path_factory, "24khz", seed=1)


@pytest.fixture(scope="module")
def official_48khz(tmp_path_factory) -> tuple[nn.Module, EncodecModel, Path]:
    return official_pair(tmp_path_factory, "48khz", seed=2)


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_load_state_dict_directly_equals_load_official(preset, request):
    """`model.load_state_dict(ref.state_dict())` (old-style weight-norm keys) gives exactly
    the weights `load_official` gives, so the equivalence tests below cover both routes."""
    ref, via_file, _ = request.getfixturevalue(f"official_{preset}")
    direct = (encodec_24khz if preset == "24khz" else encodec_48khz)()
    direct.load_state_dict(ref.state_dict())
    ours_state, direct_state = via_file.state_dict(), direct.state_dict()
    assert ours_state.keys() == direct_state.keys()
    for key in ours_state:
        assert torch.equal(ours_state[key], direct_state[key]), key
    # The effective conv weights are g · v / ‖v‖ (norm over all but dim 0) of the reference.
    ref_modules = dict(ref.named_modules())
    for name, module in direct.named_modules():
        if isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)) and preset == "24khz":
            g, v = ref_modules[name].weight_g, ref_modules[name].weight_v
            expected = g * v / v.norm(dim=(1, 2), keepdim=True)
            assert torch.allclose(module.weight, expected, rtol=1e-6, atol=1e-8), name


@pytest.mark.parametrize("length", [10 * HOP, 10 * HOP + 77], ids=["hop-multiple", "ragged"])
def test_24khz_matches_official_at_every_bandwidth(official_24khz, length, record_property):
    ref, ours, _ = official_24khz
    assert ours.target_bandwidths == ref.target_bandwidths
    x = make_audio(24_000, 1, length)
    diffs = compare_with_official(ours, ref, x, N_Q_24KHZ)
    report(record_property, f"official_24khz_len{length}", diffs)


@pytest.mark.parametrize(
    "length", [47_520 + 2 * HOP, 48_000 + 77], ids=["hop-multiple-last-chunk", "ragged"]
)
def test_48khz_matches_official_at_every_bandwidth(official_48khz, length, record_property):
    """Inputs longer than 1 s: two chunks (the second 640 or 557 samples long), overlap-add
    and one scale per chunk (one stereo item, noise left and chirp right, to save time; the
    per-item scales are checked on the small chunked model below)."""
    ref, ours, _ = official_48khz
    x = make_audio(48_000, 2, length, batch=1)
    assert len(ours._chunks(x)) == 2
    diffs = compare_with_official(ours, ref, x, N_Q_48KHZ)
    with torch.inference_mode():
        frames = ours.encode(x, 24.0)
    for frame, scale in zip(frames, expected_scales(x, 48_000, 47_520), strict=True):
        assert torch.allclose(frame.scale.double(), scale, rtol=1e-5, atol=0)
    report(record_property, f"official_48khz_len{length}", diffs)


def test_chunked_small_model_matches_official_over_many_chunks(record_property):
    """A narrow non-causal stereo model with 0.1 s chunks: four chunks, the last one
    2 samples long (shorter than the reflect padding)."""
    from encodec.modules import SEANetDecoder, SEANetEncoder
    from encodec.quantization import ResidualVectorQuantizer

    torch.manual_seed(0)
    arch = dict(channels=2, dimension=64, n_filters=8, lstm=1, norm="time_group_norm", causal=False)
    ref = encodec.EncodecModel(
        SEANetEncoder(**arch),
        SEANetDecoder(**arch),
        ResidualVectorQuantizer(dimension=64, n_q=10, bins=256),
        target_bandwidths=[1.5, 3.0, 6.0],
        sample_rate=24_000,
        channels=2,
        normalize=True,
        segment=0.1,
        overlap=0.01,
    )
    randomize_official_layout_(ref, seed=3)
    ours = encodec_tiny(
        channels=2,
        causal=False,
        norm="time_group_norm",
        normalize=True,
        segment_seconds=0.1,
        codebook_size=256,
        # 0.6 kbps per codebook: the reference rounds 1.5 kbps (2.5 codebooks) down to 2
        strict_bandwidths=False,
    ).eval()
    ours.load_state_dict(ref.state_dict())
    stride = int(0.99 * 2400)
    x = make_audio(24_000, 2, 3 * stride + 2)
    assert [c.shape[-1] for c in ours._chunks(x)] == [2400, 2400, 2378, 2]
    diffs = compare_with_official(ours, ref, x, {1.5: 2, 6.0: 10})
    with torch.inference_mode():
        frames = ours.encode(x, 6.0)
    assert [f.codes.shape for f in frames] == [(2, 10, 8)] * 3 + [(2, 10, 1)]
    for frame, scale in zip(frames, expected_scales(x, 2400, stride), strict=True):
        assert torch.allclose(frame.scale.double(), scale, rtol=1e-5, atol=0)
        assert not torch.allclose(frame.scale[0], frame.scale[1])  # one scale per item
    report(record_property, "official_small_chunked", diffs)


@pytest.fixture(scope="module")
def own_models() -> dict[str, EncodecModel]:
    """Our presets with their own random weights (not copied from a reference model)."""
    torch.manual_seed(0)
    return {
        "24khz": randomize_official_layout_(encodec_24khz(), seed=4),
        "48khz": randomize_official_layout_(encodec_48khz(), seed=5),
    }


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_export_official_loads_into_official_package(own_models, preset, tmp_path, record_property):
    ours = own_models[preset]
    path = convert.export_official(ours, tmp_path / f"{preset}.th")
    factory = getattr(encodec.EncodecModel, f"encodec_model_{preset}")
    ref = factory(pretrained=False)
    ref.load_state_dict(torch.load(path, weights_only=True))  # strict
    ref.eval()
    sample_rate, channels = ours.sample_rate, ours.channels
    x = make_audio(sample_rate, channels, sample_rate // 8 + 33)
    n_q = N_Q_24KHZ if preset == "24khz" else N_Q_48KHZ
    lowest = ours.target_bandwidths[0]
    diffs = compare_with_official(ours, ref, x, {lowest: n_q[lowest], 24.0: n_q[24.0]})
    report(record_property, f"export_official_{preset}", diffs)


# -- transformers ----------------------------------------------------------------------


def hf_config_for(preset: str):
    transformers = pytest.importorskip("transformers")
    if preset == "24khz":
        return transformers.EncodecConfig()  # its defaults are the 24 kHz model
    return transformers.EncodecConfig(
        target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        sampling_rate=48_000,
        audio_channels=2,
        normalize=True,
        chunk_length_s=1.0,
        overlap=0.01,
        norm_type="time_group_norm",
        use_causal_conv=False,
    )


def compare_with_hf(
    ours: EncodecModel, hf: nn.Module, x: torch.Tensor, bandwidths: Sequence[float]
) -> dict[str, float]:
    diffs = {}
    with torch.inference_mode():
        for bw in bandwidths:
            encoded = hf.encode(x, bandwidth=bw)  # without it, HF uses the smallest
            hf_codes, hf_scales = encoded.audio_codes, encoded.audio_scales
            pad = encoded.last_frame_pad_length
            frames = ours.encode(x, bw)
            assert hf_codes.shape[0] == len(frames)  # (chunks, batch, n_q, frames)
            for index, frame in enumerate(frames):
                frames_in_chunk = frame.codes.shape[-1]
                assert torch.equal(hf_codes[index][..., :frames_in_chunk], frame.codes), bw
                assert hf_codes.shape[-1] - frames_in_chunk in (0, pad)
                if hf_scales[index] is None:
                    assert frame.scale is None
                else:
                    diffs[f"scale@{bw}"] = max_diff(frame.scale, hf_scales[index])
            assert_codes_vary(frames[0].codes)
            hf_audio = hf.decode(hf_codes, hf_scales, last_frame_pad_length=pad).audio_values
            diffs[f"decode@{bw}"] = max_diff(ours.decode(frames), hf_audio)
            diffs[f"forward@{bw}"] = max_diff(ours(x, bw).audio, hf_audio[..., : x.shape[-1]])
    return diffs


def audio_for_hf(model: EncodecModel) -> torch.Tensor:
    # The 48 kHz input is longer than a chunk, so HF's chunking and last-frame padding count.
    if model.segment_seconds:
        return make_audio(model.sample_rate, model.channels, 48_000 + 77, batch=1, seed=7)
    return make_audio(model.sample_rate, model.channels, 24_000 // 8 + 33, seed=7)


# The 48 kHz comparisons run on two chunks of 1 s, so each direction checks one bandwidth
# (the lowest one way, the highest the other); the short 24 kHz input checks both.
HF_BANDWIDTHS = {
    "24khz": {"export": [1.5, 24.0], "load": [1.5, 24.0]},
    "48khz": {"export": [3.0], "load": [24.0]},
}


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_export_hf_loads_into_transformers(own_models, preset, tmp_path, record_property):
    transformers = pytest.importorskip("transformers")
    ours = own_models[preset]
    directory = convert.export_hf(ours, tmp_path / preset)
    hf, info = transformers.EncodecModel.from_pretrained(directory, output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys"))
    hf.eval()
    assert list(hf.config.target_bandwidths) == ours.target_bandwidths
    extractor = transformers.EncodecFeatureExtractor.from_pretrained(directory)
    assert (extractor.sampling_rate, extractor.feature_size) == (ours.sample_rate, ours.channels)
    assert extractor.chunk_length == hf.config.chunk_length
    bandwidths = HF_BANDWIDTHS[preset]["export"]
    diffs = compare_with_hf(ours, hf, audio_for_hf(ours), bandwidths)
    report(record_property, f"export_hf_{preset}", diffs)


@pytest.mark.parametrize("preset", ["24khz", "48khz"])
def test_hf_model_loads_into_ours(preset, tmp_path, record_property):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    hf = randomize_hf_(transformers.EncodecModel(hf_config_for(preset)), seed=8)
    hf.save_pretrained(tmp_path / preset)
    ours = convert.load_hf(tmp_path / preset)
    assert ours.target_bandwidths == list(hf.config.target_bandwidths)
    assert (ours.sample_rate, ours.channels) == (hf.config.sampling_rate, hf.config.audio_channels)
    bandwidths = HF_BANDWIDTHS[preset]["load"]
    diffs = compare_with_hf(ours, hf, audio_for_hf(ours), bandwidths)
    report(record_property, f"load_hf_{preset}", diffs)
