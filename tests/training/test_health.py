"""Training-health signals against hand-computed values, and the check on a collapsed codec."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from encodec_train.evaluation.metrics import MelDistance
from encodec_train.model import EncodecModel
from encodec_train.training.callbacks import TrainingHealth
from encodec_train.training.health import (
    HealthCheck,
    HealthReport,
    PersistentProblems,
    code_perplexity,
    input_specificity,
    pairwise_distances,
    probe_health,
    temporal_variation,
)


def test_temporal_variation_is_zero_for_a_constant_latent_and_matches_numpy():
    constant = torch.randn(2, 8, 1).expand(2, 8, 50)
    assert float(temporal_variation(constant)) == pytest.approx(0.0, abs=1e-6)
    latent = torch.randn(3, 4, 20, generator=torch.Generator().manual_seed(0))
    x = latent.numpy().astype(np.float64)
    expected = x.std(axis=-1, ddof=1).mean() / x.std(ddof=1)
    assert float(temporal_variation(latent)) == pytest.approx(expected, rel=1e-5)


def test_code_perplexity_counts_equally_used_codes():
    assert float(code_perplexity(torch.zeros(100, dtype=torch.long), 64)) == pytest.approx(1.0)
    uniform = torch.arange(8).repeat(10)
    assert float(code_perplexity(uniform, 64)) == pytest.approx(8.0, rel=1e-5)
    # Two codes at 3:1: exp(-(3/4 ln 3/4 + 1/4 ln 1/4)).
    skewed = torch.tensor([0, 0, 0, 1])
    expected = math.exp(-(0.75 * math.log(0.75) + 0.25 * math.log(0.25)))
    assert float(code_perplexity(skewed, 4)) == pytest.approx(expected, rel=1e-6)


def test_input_specificity_from_hand_computed_distances():
    real = torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 3.0]])
    fake = torch.tensor([[0.0, 1.0], [1.0, 1.0], [3.0, 2.0]])
    distances = pairwise_distances(fake, real)
    expected = torch.tensor([[0.5, 0.5, 2.5], [1.0, 0.0, 2.0], [2.5, 1.5, 0.5]])
    torch.testing.assert_close(distances, expected)
    # own = (0.5 + 0 + 0.5) / 3; other = (0.5 + 2.5 + 1 + 2 + 2.5 + 1.5) / 6
    assert float(input_specificity(distances)) == pytest.approx((1 / 3) / (10 / 6))
    # An output that ignores its input is as far from its own clip as from the others.
    same = pairwise_distances(torch.ones(3, 2), real)
    assert float(input_specificity(same)) == pytest.approx(
        float(same.diagonal().mean() / ((same.sum() - same.trace()) / 6))
    )
    with pytest.raises(ValueError, match="two clips"):
        input_specificity(distances[:1, :1])


def _report(step=200, **changes) -> HealthReport:
    healthy = dict(
        step=step,
        level0_perplexity=20.0,
        encoder_temporal_variation=0.5,
        own_other_ratio=0.6,
        distance_per_bandwidth={1.5: 0.9, 3.0: 0.8, 6.0: 0.7},
        discriminator_accuracy=0.7,
        discriminator_loss=1.6,
    )
    return HealthReport(**{**healthy, **changes})


def test_health_check_passes_a_healthy_report_and_names_each_collapse_sign():
    check = HealthCheck(start_step=60)
    assert check.problems(_report()) == {}
    collapsed = _report(
        level0_perplexity=1.0,
        encoder_temporal_variation=0.01,
        own_other_ratio=1.0,
        distance_per_bandwidth={1.5: 1.0, 3.0: 1.0, 6.0: 1.0},
        discriminator_accuracy=0.5,
    )
    problems = check.problems(collapsed)
    assert len(problems) == 5
    for words in ("perplexity", "constant", "input", "more bits", "not learning"):
        assert any(words in p for p in problems.values()), words
    # Nothing is reported before the codec had a chance to learn, nor about a discriminator
    # that joined training (after a warm-up) less than start_step steps ago.
    assert check.problems(_report(step=40, level0_perplexity=1.0)) == {}
    stuck = _report(step=200, discriminator_accuracy=0.5)
    assert check.problems(stuck, adversary_start_step=150) == {}
    assert list(check.problems(stuck, adversary_start_step=140)) == ["discriminator_accuracy"]


def test_a_problem_is_reported_once_it_persists_for_patience_probes():
    """The demo's borderline bandwidth reading at steps 200 and 600 (0.0960 vs 0.0959,
    healthy probes around them) stays quiet; a collapse found on consecutive probes is
    reported from the second one on, and a streak is broken by one healthy probe."""
    persistent = PersistentProblems(patience=2)
    flat = {"bandwidth_gain": "more bits do not help"}
    collapsed = {"perplexity": "one code", "bandwidth_gain": "more bits do not help"}
    sequence = [flat, {}, flat, collapsed, collapsed, {"perplexity": "one code"}, {}, collapsed]
    reported = [persistent.update(found) for found in sequence]
    assert reported == [
        [], [], [], ["more bits do not help"], ["one code", "more bits do not help"],
        ["one code"], [], [],
    ]  # fmt: skip
    assert PersistentProblems(patience=1).update(flat) == ["more bits do not help"]
    with pytest.raises(ValueError, match="patience=0"):
        PersistentProblems(patience=0)


def test_a_constant_encoder_trips_every_codec_signal():
    torch.manual_seed(0)
    model = EncodecModel(
        target_bandwidths=[1.5, 3.0], n_filters=4, dimension=16, lstm_layers=0,
        codebook_size=32, kmeans_iters=2,
    )  # fmt: skip
    last_conv = model.encoder.model[-1].conv.conv
    with torch.no_grad():
        last_conv.parametrizations.weight.original0.zero_()  # output = bias, whatever the input
    audio = 0.1 * torch.randn(4, 1, 24_000)
    model.train()
    model(audio, 3.0)  # k-means on the constant latent
    report = probe_health(model, None, audio, step=100, distance=MelDistance(24_000))
    assert report.level0_perplexity == pytest.approx(1.0)
    assert report.encoder_temporal_variation == pytest.approx(0.0, abs=1e-5)
    assert report.own_other_ratio > 0.99
    assert report.discriminator_accuracy is None
    problems = HealthCheck(start_step=0).problems(report)
    assert len(problems) == 4  # all but the discriminator's, which was not probed
    assert model.training  # the probe restores the mode it found


def test_the_health_callback_keeps_its_streaks_across_a_resume():
    """A run stopped between two probes that both find a collapse still reports it: the
    streaks travel in the checkpoint's callback state."""
    before = TrainingHealth(every_n_steps=100, check=HealthCheck(), patience=2)
    before.persistent.update({"perplexity": "one code"})
    after = TrainingHealth(every_n_steps=100, check=HealthCheck(), patience=2)
    after.load_state_dict(before.state_dict())
    assert after.persistent.update({"perplexity": "one code"}) == ["one code"]
