"""The Hydra tree: recipes really override the primary config, and bad configs fail early."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate
from omegaconf import OmegaConf
from run_helpers import CONF_DIR

from encodec_train.model import encodec_24khz, encodec_48khz
from encodec_train.training.config_checks import ConfigError, check_config, check_manifests


def compose_config(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def test_recipe_48khz_has_the_paper_48khz_settings():
    """§3.4 / §4.2: doubled STFT windows, left and right judged separately, λg = λfeat = 4,
    discriminator updated with p = 1/2."""
    cfg = compose_config("+recipe=48khz")
    assert list(cfg.discriminator.n_ffts) == [4096, 2048, 1024, 512, 256]
    assert cfg.discriminator.separate_channels is True
    assert dict(cfg.loss.balancer.weights) == {
        "time": 0.1,
        "mel": 1.0,
        "adversarial": 4.0,
        "feature_matching": 4.0,
    }
    assert cfg.training.discriminator_update_prob == 0.5
    # "We train the fullband stereo EnCodec on only 48 kHz music."
    assert list(cfg.data.train_manifests) == ["data_manifests/jamendo_48khz.jsonl"]
    assert [(s.probability, list(s.include_domains)) for s in cfg.data.strategies] == [
        (1.0, ["music"])
    ]
    with pytest.raises(ConfigError, match=r"data\.train_manifests: manifest .*jamendo_48khz"):
        check_manifests(cfg.data)
    # The 24 kHz recipe keeps the reference layout and 3/3.
    cfg24 = compose_config("+recipe=24khz")
    assert cfg24.discriminator.separate_channels is False
    assert cfg24.loss.balancer.weights.adversarial == 3.0


def test_recipe_48khz_gives_48khz_stereo():
    cfg = compose_config("+recipe=48khz")
    assert cfg.model.sample_rate == 48000
    assert cfg.model.channels == 2
    assert cfg.model.causal is False
    assert cfg.model.norm == "time_group_norm"
    assert cfg.model.normalize is True
    assert cfg.model.segment_seconds == 1.0
    assert list(cfg.model.target_bandwidths) == [3.0, 6.0, 12.0, 24.0]
    assert cfg.discriminator.in_channels == 2
    assert cfg.data.sample_rate == 48000 and cfg.data.channels == 2
    assert cfg.training.discriminator_update_prob == 0.5
    assert cfg.trainer.precision == "bf16-mixed"
    # The config builds exactly the official 48 kHz architecture.
    model = instantiate(cfg.model, _convert_="all")
    assert model.config == encodec_48khz().config


def test_recipe_24khz_has_the_paper_hyperparameters():
    cfg = compose_config("+recipe=24khz")
    assert cfg.model.sample_rate == 24000 and cfg.model.channels == 1
    assert cfg.model.causal is True and cfg.model.norm == "weight_norm"
    assert list(cfg.model.target_bandwidths) == [1.5, 3.0, 6.0, 12.0, 24.0]
    assert cfg.model.codebook_size == 1024 and cfg.model.ema_decay == 0.99
    assert dict(cfg.loss.balancer.weights) == {
        "time": 0.1,
        "mel": 1.0,
        "adversarial": 3.0,
        "feature_matching": 3.0,
    }
    assert cfg.loss.balancer.ema_decay == 0.999
    assert cfg.loss.generator_loss == "hinge" and cfg.loss.feature_matching == "relative"
    assert list(cfg.loss.mel.window_exponents) == [5, 6, 7, 8, 9, 10, 11]
    assert cfg.loss.mel.n_mels == 64
    for optimizer in (cfg.optim.generator, cfg.optim.discriminator):
        assert optimizer.lr == 3e-4 and list(optimizer.betas) == [0.5, 0.9]
    assert list(cfg.discriminator.n_ffts) == [2048, 1024, 512, 256, 128]
    assert cfg.discriminator.filters == 32
    # Global batch 64 × 1 s over 8 GPUs; 300 epochs × 2000 updates.
    assert cfg.data.batch_size * cfg.trainer.devices * cfg.trainer.num_nodes == 64
    assert cfg.data.segment_seconds == 1.0
    assert cfg.trainer.max_epochs == 300 and cfg.trainer.limit_train_batches == 2000
    assert cfg.training.discriminator_update_prob == pytest.approx(2 / 3, abs=1e-3)
    assert cfg.trainer.precision == "bf16-mixed"
    # The demo's departures stay in the demo: adversary from step 0, official init.
    assert cfg.training.adversary_start_step == 0
    assert cfg.training.discriminator_per_bandwidth is True  # §3.4, one per bandwidth
    assert cfg.model.init == "pytorch" and cfg.discriminator.init == "pytorch"
    assert instantiate(cfg.model, _convert_="all").config == encodec_24khz().config


def test_no_recipe_is_the_demo():
    cfg = compose_config()
    assert cfg.model.name == "encodec_tiny"
    assert cfg.trainer.accelerator == "cpu"
    assert cfg.demo_corpus == "data_manifests/demo"
    assert cfg.run_dir == "runs/demo"
    explicit = compose_config("+recipe=demo")
    for group in ("model", "discriminator", "loss", "optim", "data", "trainer", "training"):
        assert cfg[group] == explicit[group], group


def test_unknown_key_fails_at_composition():
    with pytest.raises(ConfigCompositionException, match="model.bandwith"):
        compose_config("model.bandwith=3")


def test_bad_bandwidth_names_the_key():
    cfg = compose_config("+recipe=24khz", "model.target_bandwidths=[0.1,6.0]")
    with pytest.raises(ConfigError, match=r"model\.target_bandwidths contains 0\.1"):
        check_config(cfg)


def test_a_wrongly_typed_value_names_its_key_before_anything_is_built():
    """Once failed after restoring a checkpoint with "'<=' not supported between 'float' and
    'str'" and no key."""
    cfg = compose_config("optim.generator.lr=abc")
    with pytest.raises(ConfigError, match=r"optim\.generator\.lr='abc': expected float"):
        check_config(cfg)
    cfg = compose_config("+recipe=24khz", "model.n_filters=3.5")
    with pytest.raises(ConfigError, match=r"model\.n_filters=3\.5: expected int, got float"):
        check_config(cfg)
    for recipe in ((), ("+recipe=24khz",), ("+recipe=48khz",)):
        check_config(compose_config(*recipe))  # every shipped config passes


def test_fp16_is_refused_before_building_anything():
    cfg = compose_config("trainer.precision=16-mixed")
    with pytest.raises(ConfigError, match="trainer.precision"):
        check_config(cfg)


def test_missing_manifest_names_the_key_and_path(tmp_path):
    cfg = compose_config("+recipe=24khz")
    missing = tmp_path / "nowhere.jsonl"
    OmegaConf.update(cfg, "data.train_manifests", [str(missing)])
    with pytest.raises(ConfigError, match=rf"data\.train_manifests: manifest {missing}"):
        check_manifests(cfg.data)
    # Reverberation (p = 0.2 in the recipe) reads the DNS impulse responses: named up front.
    with pytest.raises(ConfigError, match=r"data\.impulse_responses: manifest .*dns_impulse"):
        check_manifests(cfg.data)
    OmegaConf.update(cfg, "data.reverb_probability", 0.0)
    with pytest.raises(ConfigError) as refused:
        check_manifests(cfg.data)
    assert "impulse_responses" not in str(refused.value)


def test_reverberation_without_impulse_responses_names_both_keys():
    # The demo has no responses (impulse_responses: null); turning reverberation on must say
    # what is missing instead of failing inside pathlib.
    cfg = compose_config("data.reverb_probability=0.2")
    with pytest.raises(ConfigError, match=r"data\.reverb_probability=0\.2 reads data\.impulse"):
        check_manifests(cfg.data)
