"""Metrics against closed forms, and the perceptual ones on identical vs. degraded audio."""

from __future__ import annotations

import math

import pytest
import torch
from eval_signals import with_noise

from encodec_train.evaluation.metrics import (
    SILENCE_DB,
    MelDistance,
    MetricNotApplicable,
    compute,
    si_snr,
    si_snr_mean,
)

# Zero-mean by hand: the projection of DEGRADED on REFERENCE is 6/4 · REFERENCE =
# [1.5, −1.5, 1.5, −1.5], the rest [0.5, 0.5, −0.5, −0.5]: SI-SNR = 10 log10(9 / 1).
REFERENCE = torch.tensor([1.0, -1.0, 1.0, -1.0], dtype=torch.float64)
DEGRADED = torch.tensor([2.0, -1.0, 1.0, -2.0], dtype=torch.float64)
HAND_SI_SNR = 10 * math.log10(9.0)


def at_dbfs(signal: torch.Tensor, level_db: float) -> torch.Tensor:
    """`signal` scaled so that its RMS about its mean is `level_db` dBFS."""
    centred = signal - signal.mean(-1, keepdim=True)
    return signal * 10 ** (level_db / 20) / centred.pow(2).mean(-1, keepdim=True).sqrt()


def test_si_snr_of_a_small_signal_is_the_hand_computed_value_whatever_the_offsets():
    assert float(si_snr(DEGRADED, REFERENCE)) == pytest.approx(HAND_SI_SNR, abs=1e-9)
    # Both made zero-mean first, and a gain on the degraded signal changes nothing.
    shifted = si_snr(0.2 * DEGRADED + 0.3, REFERENCE - 0.7)
    assert float(shifted) == pytest.approx(HAND_SI_SNR, abs=1e-9)


def test_si_snr_of_a_scaled_copy_is_very_high_whatever_the_scale():
    reference = torch.randn(2, 8000, generator=torch.Generator().manual_seed(0))
    for scale in (0.01, 1.0, 30.0):
        assert (si_snr(scale * reference, reference) > 100).all()


def test_an_output_with_nothing_of_the_reference_scores_the_floor():
    """A collapsed codec (zeros, a constant) or an output orthogonal to the reference must
    score below any output that carries the reference, not 0 dB: 10 log10(1e-12)."""
    reference = torch.tensor([1.0, -2.0, 3.0, -2.0])
    orthogonal = torch.tensor([-5.0, 1.0, 3.0, 1.0])  # zero mean, <o, r> = 0
    for output in (torch.zeros(4), torch.full((4,), 0.3), orthogonal):
        assert float(si_snr(output, reference)) == pytest.approx(-120.0, abs=1e-9)
    assert float(si_snr(orthogonal + 0.01 * reference, reference)) > -120.0 + 70


def test_si_snr_of_orthogonal_noise_is_the_energy_ratio_exactly():
    generator = torch.Generator().manual_seed(1)
    reference = torch.randn(16000, generator=generator, dtype=torch.float64)
    reference -= reference.mean()
    noise = torch.randn(16000, generator=generator, dtype=torch.float64)
    noise -= noise.mean()
    noise -= (noise @ reference) / (reference @ reference) * reference  # orthogonal to it
    for snr in (-5.0, 0.0, 12.5, 30.0):
        scaled = noise * math.sqrt((reference @ reference) / (noise @ noise) / 10 ** (snr / 10))
        # A gain on the degraded signal changes nothing: the target absorbs it.
        assert float(si_snr(0.3 * (reference + scaled), reference)) == pytest.approx(snr, abs=1e-6)


def test_si_snr_of_random_noise_at_a_known_snr_is_that_snr(speech):
    for snr in (0.0, 10.0, 20.0):
        assert float(si_snr(with_noise(speech, snr), speech)) == pytest.approx(snr, abs=0.1)


def test_silent_references_are_left_out_of_the_mean_and_counted():
    # Target = the reference itself, noise ±0.5: SI-SNR 10 log10(4 / 1).
    noisy = REFERENCE + 0.5 * torch.tensor([1.0, 1.0, -1.0, -1.0], dtype=torch.float64)
    pairs = [  # (reference, degraded) per segment: two normal ones, then three silent ones
        (REFERENCE, DEGRADED),
        (at_dbfs(REFERENCE, SILENCE_DB + 1), noisy),  # quiet, just above the threshold
        (torch.zeros(4, dtype=torch.float64), DEGRADED),
        (at_dbfs(REFERENCE, SILENCE_DB - 1), DEGRADED),  # just below it
        (torch.full((4,), 0.5, dtype=torch.float64), DEGRADED),  # a DC offset, no signal
    ]
    references, degraded = (torch.stack(signals)[:, None] for signals in zip(*pairs, strict=True))
    result = si_snr_mean(degraded, references)  # [segments, channels, time]
    assert float(result.value) == pytest.approx((HAND_SI_SNR + 10 * math.log10(4.0)) / 2)
    assert (result.scored, result.silent) == (2, 3)
    # A stricter threshold leaves out the quiet segment too.
    stricter = si_snr_mean(degraded, references, silence_db=SILENCE_DB + 2)
    assert float(stricter.value) == pytest.approx(HAND_SI_SNR)
    assert (stricter.scored, stricter.silent) == (1, 4)


def test_si_snr_of_only_silent_references_is_nan_with_every_channel_counted():
    result = si_snr_mean(DEGRADED.expand(3, 2, 4), torch.zeros(3, 2, 4))
    assert math.isnan(float(result.value))
    assert (result.scored, result.silent) == (0, 6)


def test_the_evaluation_scores_the_channels_of_a_clip_that_are_not_silent(speech):
    noisy = with_noise(speech, 10.0)
    half_silent = torch.cat([speech, torch.zeros_like(speech)])
    value = compute("si_snr", half_silent, torch.cat([noisy, noisy]), 16000, "speech")
    assert value == pytest.approx(float(si_snr(noisy, speech)), abs=1e-9)


def test_mel_distance_is_the_mean_absolute_mel_difference(speech):
    degraded = with_noise(speech, 10.0)
    mel = MelDistance(16000)
    expected = (mel.spectrogram(degraded[None]) - mel.spectrogram(speech[None])).abs().mean()
    assert compute("mel_distance", speech, degraded, 16000, "speech") == pytest.approx(
        float(expected), rel=1e-6
    )
    assert compute("mel_distance", speech, speech, 16000, "speech") == 0.0


def test_inputs_are_checked_and_inapplicable_metrics_say_why(speech, music):
    with pytest.raises(ValueError, match="same length"):
        compute("si_snr", speech, speech[:, :-1], 16000, "speech")
    with pytest.raises(MetricNotApplicable, match="silent"):
        compute("si_snr", torch.zeros_like(speech), speech, 16000, "speech")
    with pytest.raises(MetricNotApplicable, match="speech only, not music"):
        compute("pesq", music, music, 48000, "music")
    with pytest.raises(MetricNotApplicable, match="16000 Hz"):
        compute("pesq", speech[:, ::2], speech[:, ::2], 8000, "speech")
    with pytest.raises(ValueError, match="known: si_snr"):
        compute("snr", speech, speech, 16000, "speech")


def test_pesq_and_stoi_are_near_their_maximum_for_identical_speech_and_lower_when_degraded(
    speech,
):
    assert compute("pesq", speech, speech, 16000, "speech") > 4.5  # 4.64 is the maximum
    assert compute("pesq", speech, with_noise(speech, 5.0), 16000, "speech") < 2.5
    assert compute("stoi", speech, speech, 16000, "speech") > 0.99
    assert compute("stoi", speech, with_noise(speech, -5.0), 16000, "speech") < 0.85


@pytest.mark.slow
def test_visqol_is_near_its_maximum_for_identical_audio_and_lower_when_degraded(speech, music):
    assert compute("visqol", speech, speech, 16000, "speech") > 4.5  # speech mode, max 5
    assert compute("visqol", speech, with_noise(speech, 5.0), 16000, "speech") < 3.5
    assert compute("visqol", music, music, 48000, "music") > 4.5  # audio mode, max ~4.75
    assert compute("visqol", music, with_noise(music, 10.0), 48000, "music") < 3.5
