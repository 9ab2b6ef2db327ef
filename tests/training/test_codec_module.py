"""The per-step draws of `CodecGANModule`, and the alternative objectives' configs."""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import InstantiationException
from run_helpers import CONF_DIR

from encodec_train.training.builder import build_module


def module_from(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return build_module(compose("config", overrides=list(overrides)))


def within_five_standard_errors(count: int, draws: int, probability: float) -> bool:
    return abs(count - draws * probability) <= 5 * math.sqrt(
        draws * probability * (1 - probability)
    )


def test_bandwidths_are_uniform_and_the_discriminator_trains_with_its_probability():
    module = module_from("training.discriminator_update_prob=0.25")
    draws = 4000
    plans = [module.draw_step_plan() for _ in range(draws)]
    # 1.5, 3 and 6 kbps are 4, 8 and 16 codebooks of 32 codes at 75 frames/s.
    codebooks = Counter(plan.n_q for plan in plans)
    assert set(codebooks) == {4, 8, 16}
    for count in codebooks.values():
        assert within_five_standard_errors(count, draws, 1 / 3)
    updates = sum(plan.update_discriminator for plan in plans)
    assert within_five_standard_errors(updates, draws, 0.25)


def test_the_draws_repeat_for_a_seed_so_every_rank_agrees():
    a, b = module_from("seed=3"), module_from("seed=3")
    assert [a.draw_step_plan() for _ in range(50)] == [b.draw_step_plan() for _ in range(50)]
    other = module_from("seed=4")
    assert [a.draw_step_plan() for _ in range(50)] != [other.draw_step_plan() for _ in range(50)]


def test_codebook_sampling_draws_every_count_of_codebooks():
    module = module_from("training.bandwidth_sampling=codebooks")
    counts = Counter(module.draw_step_plan().n_q for _ in range(3000))
    n_q = module.generator.quantizer.n_q
    assert set(counts) == set(range(1, n_q + 1))
    for count in counts.values():
        assert within_five_standard_errors(count, 3000, 1 / n_q)


def test_audiocraft_objective_composes_and_builds():
    module = module_from("loss=audiocraft_weights")
    assert module.adversarial.generator_loss == "negative_mean"
    assert module.adversarial.feature_matching == "l1"
    shares = dict(zip(module.balancer.names, module.balancer.shares.tolist(), strict=True))
    assert shares["mel"] == pytest.approx(2 / 10.1)
    assert shares["adversarial"] == pytest.approx(4 / 10.1)


def test_unknown_bandwidth_sampling_is_refused():
    # Hydra's InstantiationException carries the module's ValueError and the config key.
    with pytest.raises(InstantiationException, match="bandwidth_sampling='per_item'"):
        module_from("training.bandwidth_sampling=per_item")


def test_an_impossible_update_probability_is_refused_before_training():
    with pytest.raises(InstantiationException, match=r"discriminator_update_prob=1\.5"):
        module_from("training.discriminator_update_prob=1.5")
