"""Bandwidth arithmetic against the paper's numbers and closed forms: kbps per codebook,
codebooks per bandwidth for the official models, and the refusal of fractional codebooks."""

from __future__ import annotations

import math

import pytest

from encodec_train.model.bandwidth import (
    bandwidth_per_codebook,
    check_target_bandwidths,
    codebooks_for_bandwidth,
    latent_frame_rate,
)


def test_frame_rates_of_the_official_models():
    # strides (8, 5, 4, 2): hop 320 samples
    assert latent_frame_rate(24_000, 320) == 75
    assert latent_frame_rate(48_000, 320) == 150
    assert latent_frame_rate(16_000, 320) == 50
    assert latent_frame_rate(22_050, 320) == 69  # ceil(68.9)


@pytest.mark.parametrize(
    "codebook_size, frame_rate, kbps",
    [(1024, 75, 0.75), (1024, 150, 1.5), (64, 75, 0.45), (2048, 50, 0.55), (2, 75, 0.075)],
)
def test_bandwidth_per_codebook_is_bits_times_frame_rate(codebook_size, frame_rate, kbps):
    assert bandwidth_per_codebook(codebook_size, frame_rate) == pytest.approx(kbps, rel=1e-12)


@pytest.mark.parametrize("codebook_size", [0, 1, 3, 1000])
def test_codebook_size_must_be_a_power_of_two(codebook_size):
    with pytest.raises(ValueError, match=rf"codebook_size={codebook_size} must be a power of 2"):
        bandwidth_per_codebook(codebook_size, 75)


@pytest.mark.parametrize(
    "frame_rate, bandwidths",
    [(75, [1.5, 3.0, 6.0, 12.0, 24.0]), (150, [3.0, 6.0, 12.0, 24.0])],
    ids=["24khz", "48khz"],
)
def test_official_bandwidths_are_whole_numbers_of_codebooks(frame_rate, bandwidths):
    """Paper §4.2: 1.5–24 kbps at 24 kHz (2–32 codebooks), 3–24 kbps at 48 kHz (2–16)."""
    codebooks = check_target_bandwidths(bandwidths, 1024, frame_rate)
    # closed form: 10 bits per code, frame_rate codes per second
    assert codebooks == [round(b * 1000 / (10 * frame_rate)) for b in bandwidths]
    assert codebooks == [2, 4, 8, 16, 32][: len(bandwidths)]


def test_fractional_codebooks_are_refused_with_the_nearest_valid_bandwidths():
    # 5 kbps at 0.75 kbps per codebook is 6.67 codebooks: 4.5 (6) and 5.25 (7) kbps fit.
    with pytest.raises(ValueError) as error:
        codebooks_for_bandwidth(5.0, 1024, 75)
    message = str(error.value)
    assert "bandwidth 5.0 kbps is not a whole number of codebooks" in message
    assert "4.5 kbps (6 codebooks) and 5.25 kbps (7 codebooks)" in message
    # the demo-sized codebook: 64 codes = 6 bits, 0.45 kbps at 75 frames/s; 1.5 kbps = 3.33
    with pytest.raises(ValueError, match=r"1\.35 kbps \(3 codebooks\) and 1\.8 kbps \(4"):
        check_target_bandwidths([1.5, 3.0, 6.0], 64, 75)


def test_without_strict_a_bandwidth_rounds_down_as_the_official_package():
    for bandwidth in (5.0, 1.5, 3.0, 6.0):
        expected = math.floor(bandwidth * 1000 / (6 * 75))
        assert codebooks_for_bandwidth(bandwidth, 64, 75, strict=False) == expected
    assert codebooks_for_bandwidth(5.0, 1024, 75, strict=False) == 6


def test_floating_point_noise_is_not_a_fraction():
    # 0.1 + 0.2 kbps-style noise: 2.7 kbps is 6 codebooks of 0.45 kbps
    assert codebooks_for_bandwidth(0.45 * 6, 64, 75) == 6
    assert codebooks_for_bandwidth(2.2, 2048, 50) == 4


@pytest.mark.parametrize("strict", [True, False])
def test_below_one_codebook_and_empty_lists_are_refused(strict):
    with pytest.raises(ValueError, match=r"bandwidth 0\.1 kbps is below one codebook of 0\.75"):
        codebooks_for_bandwidth(0.1, 1024, 75, strict=strict)
    with pytest.raises(ValueError, match="target_bandwidths is empty"):
        check_target_bandwidths([], 1024, 75, strict=strict)
