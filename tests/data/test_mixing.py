"""Mixing strategies, pools, per-source normalisation, gains and clipping protection."""

import math

import numpy as np
import pytest
import torch
from fake_corpora import PAPER_STRATEGIES

from encodec_train.data.mixing import Mixer, MixingStrategy, StrategySampler

DOMAIN = np.array(["speech"] * 6 + ["music"] * 5 + ["general"] * 4, dtype=object)
DATASET = np.array(["dns"] * 3 + ["cv"] * 3 + ["jamendo"] * 5 + ["fsd"] * 4, dtype=object)


def paper_sampler(weights: np.ndarray | None = None) -> StrategySampler:
    return StrategySampler(
        PAPER_STRATEGIES, DOMAIN, DATASET, np.ones(len(DOMAIN)) if weights is None else weights
    )


def five_standard_errors(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n)


def test_strategy_frequencies_match_the_configured_probabilities():
    sampler = paper_sampler()
    rng = np.random.default_rng(0)
    draws = [s for _ in range(500) for s, _ in sampler.draw(rng, 40)]
    n = len(draws)
    counts = np.bincount(draws, minlength=4)
    for strategy, count in zip(PAPER_STRATEGIES, counts, strict=True):
        p = strategy.probability
        assert abs(count / n - p) < five_standard_errors(p, n), strategy.name


def test_sources_follow_each_strategy_pool_and_are_distinct():
    sampler = paper_sampler()
    rng = np.random.default_rng(1)
    for strategy, files in (d for _ in range(300) for d in sampler.draw(rng, 16)):
        name = sampler.strategies[strategy].name
        assert len(files) == {"s1": 1, "s2": 1, "s3": 2, "s4": 3}[name]
        assert len(set(files)) == len(files)
        domains = set(DOMAIN[files])
        if name == "s1":
            assert domains == {"music"}
        if name in ("s2", "s4"):
            assert "music" not in domains


def test_file_choice_is_proportional_to_duration_times_weight():
    weights = np.arange(1, len(DOMAIN) + 1, dtype=np.float64)  # e.g. duration x weight
    strategy = MixingStrategy("all", 1.0, 1)
    sampler = StrategySampler([strategy], DOMAIN, DATASET, weights)
    rng = np.random.default_rng(2)
    n = 30000
    counts = np.bincount([f[0] for _ in range(n // 100) for _, f in sampler.draw(rng, 100)])
    expected = weights / weights.sum()
    assert np.all(np.abs(counts / n - expected) < 5 * np.sqrt(expected * (1 - expected) / n))


def test_zero_weight_files_are_never_drawn():
    weights = np.where(DOMAIN == "general", 0.0, 1.0)
    sampler = paper_sampler(weights)
    rng = np.random.default_rng(3)
    drawn = {f for _ in range(200) for _, files in sampler.draw(rng, 8) for f in files}
    assert not any(DOMAIN[f] == "general" for f in drawn)


def test_dataset_filters():
    strategy = MixingStrategy(
        "speech_but_cv", 1.0, 1, include_domains=["speech"], exclude_datasets=["cv"]
    )
    sampler = StrategySampler([strategy], DOMAIN, DATASET, np.ones(len(DOMAIN)))
    assert set(DATASET[sampler.pools[0].files]) == {"dns"}


def test_empty_pool_is_an_error_naming_the_strategy():
    no_music = DOMAIN != "music"
    with pytest.raises(ValueError, match="strategy s1 mixes 1 distinct file"):
        StrategySampler(PAPER_STRATEGIES, DOMAIN[no_music], DATASET[no_music], np.ones(10))
    with pytest.raises(ValueError, match="strategy trio .* pool holds 2"):
        StrategySampler(
            [MixingStrategy("trio", 1.0, 3, include_datasets=["x"])],
            DOMAIN[:2],
            np.array(["x", "x"], dtype=object),
            np.ones(2),
        )


def test_strategy_with_probability_zero_may_have_an_empty_pool():
    no_music = DOMAIN != "music"
    strategies = [
        MixingStrategy("s1", 0.0, 1, include_domains=["music"]),
        MixingStrategy("s2", 1.0, 1),
    ]
    sampler = StrategySampler(strategies, DOMAIN[no_music], DATASET[no_music], np.ones(10))
    assert [s.name for s in sampler.strategies] == ["s2"]


def test_bad_configuration_is_refused():
    with pytest.raises(ValueError, match="sum to 1"):
        StrategySampler([MixingStrategy("a", 0.5)], DOMAIN, DATASET, np.ones(len(DOMAIN)))
    with pytest.raises(ValueError, match="unknown domain.*musik"):
        StrategySampler(
            [MixingStrategy("a", 1.0, include_domains=["musik"])],
            DOMAIN,
            DATASET,
            np.ones(len(DOMAIN)),
        )
    with pytest.raises(ValueError, match="gain_db"):
        Mixer(gain_db=(6.0, -10.0))


def sine(amplitude: float, time: int = 4800, cycles: int = 48) -> torch.Tensor:
    """[1, time] sine with a whole number of cycles, so its RMS is amplitude / sqrt(2)."""
    return amplitude * torch.sin(2 * math.pi * cycles * torch.arange(time) / time)[None]


def rms_db(x: torch.Tensor) -> float:
    return 20 * math.log10(x.square().mean().sqrt().item())


def mix_one_each(mixer: Mixer, sources: list[torch.Tensor], gains_db: list[float], valid=None):
    """Each source its own example."""
    stacked = torch.stack(sources)
    n, time = len(sources), stacked.shape[-1]
    valid = torch.full((n,), time) if valid is None else torch.tensor(valid)
    return mixer.mix(stacked, valid, torch.arange(n), torch.tensor(gains_db), n)


def test_each_source_is_normalised_to_the_rms_level_then_gained():
    mixer = Mixer(rms_db=-20.0, loudness="segment")
    # Sines of amplitude 0.05 and 0.8 (RMS -29.0 and -4.9 dBFS) both come out at -20 dB + gain.
    audio, mask = mix_one_each(mixer, [sine(0.05), sine(0.8), sine(0.3)], [0.0, 6.0, -10.0])
    assert [rms_db(a) for a in audio] == pytest.approx([-20.0, -14.0, -30.0], abs=1e-3)
    # RMS -20 dBFS is 0.1, so a sine's peak is 0.1 * sqrt(2).
    assert audio[0].abs().max().item() == pytest.approx(0.1 * math.sqrt(2), rel=1e-3)
    assert torch.all(mask == 1)


def test_rms_is_measured_on_the_valid_part_only():
    source = sine(0.2)
    source[:, 2400:] = 0  # padding
    audio, mask = mix_one_each(
        Mixer(rms_db=-20.0, loudness="segment"), [source], [0.0], valid=[2400]
    )
    assert rms_db(audio[0, :, :2400]) == pytest.approx(-20.0, abs=1e-3)
    assert mask[0, 0, :2400].eq(1).all() and mask[0, 0, 2400:].eq(0).all()


def test_near_silence_is_not_amplified_past_the_floor():
    # RMS -63 dBFS is treated as the -40 dBFS floor: +20 dB brings it to -43 dBFS.
    quiet = sine(10 ** (-60 / 20))
    audio, _ = mix_one_each(
        Mixer(rms_db=-20.0, min_rms_db=-40.0, loudness="segment"), [quiet], [0.0]
    )
    assert rms_db(audio[0]) == pytest.approx(-63.0103 + 20.0, abs=1e-3)


def test_sources_sum_and_a_clipping_mixture_is_scaled_to_the_peak_limit():
    mixer = Mixer(rms_db=-10.0, peak_limit=0.9, loudness="segment")
    a, b = sine(0.3), sine(0.5)  # in phase
    # Each at -10 + 6 = -4 dBFS RMS: peak 10**(-4/20) * sqrt(2) = 0.892; summed 1.785 > 0.9.
    audio, mask = mixer.mix(
        torch.stack([a, b, sine(0.3)]),
        torch.tensor([4800, 2000, 4800]),
        torch.tensor([0, 0, 1]),
        torch.tensor([6.0, 6.0, -10.0]),
        2,
    )
    assert mixer.clipped(audio).tolist() == [True, False]
    audio = mixer.limit(audio)
    assert audio[0].abs().max().item() == pytest.approx(0.9, rel=1e-5)
    torch.testing.assert_close(audio[0] / audio[0].abs().max(), a / a.abs().max())
    # The quiet example is below the limit and untouched: -20 dBFS.
    assert rms_db(audio[1]) == pytest.approx(-20.0, abs=1e-3)
    assert mask[0].eq(1).all()  # the longer source makes the whole example real


def test_gains_are_uniform_over_the_configured_range():
    gains = Mixer(gain_db=(-10.0, 6.0)).draw_gains(np.random.default_rng(4), 20000)
    assert gains.min() >= -10.0 and gains.max() <= 6.0
    assert gains.min() < -9.9 and gains.max() > 5.9
    # Uniform on [-10, 6]: mean -2, standard deviation 16 / sqrt(12).
    assert gains.mean().item() == pytest.approx(-2.0, abs=5 * 16 / math.sqrt(12 * 20000))
    assert gains.std().item() == pytest.approx(16 / math.sqrt(12), rel=0.02)


def test_file_loudness_scales_each_source_by_its_file_rms():
    mixer = Mixer(rms_db=-20.0, loudness="file")
    # Same segment, two files: one whose whole is as loud as the segment, one 10x louder.
    source = sine(0.1 * math.sqrt(2))  # RMS 0.1
    stacked = torch.stack([source, source])
    audio, _ = mixer.mix(
        stacked,
        torch.full((2,), 4800),
        torch.arange(2),
        torch.tensor([0.0, -6.0]),
        2,
        file_rms=torch.tensor([0.1, 1.0]),
    )
    # 0.1 x 10 ** (-20 / 20) / 0.1 and 0.1 x 10 ** (-26 / 20) / 1.0.
    assert [rms_db(a) for a in audio] == pytest.approx([-20.0, -46.0], abs=1e-3)
    with pytest.raises(ValueError, match="file_rms"):
        mixer.mix(stacked, torch.full((2,), 4800), torch.arange(2), torch.zeros(2), 2)


def test_bad_loudness_or_clipping_is_refused():
    with pytest.raises(ValueError, match="loudness"):
        Mixer(loudness="track")
    with pytest.raises(ValueError, match="clipping"):
        Mixer(clipping="clip")
    with pytest.raises(ValueError, match="max_redraws"):
        Mixer(max_redraws=-1)
