"""Checks of a composed config that must fail before any model is built or GPU touched."""

from __future__ import annotations

import math
from pathlib import Path

from omegaconf import DictConfig

from encodec_train.model.bandwidth import bits_per_code, codebooks_for_bandwidth, latent_frame_rate

UNSUPPORTED_PRECISIONS = ("16-mixed", "16", 16, "16-true")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def check_model(model: DictConfig) -> None:
    """Bandwidths, channels and codebook size that the codec can honour (the model's own
    bandwidth arithmetic, with the config key in the message)."""
    if model.channels not in (1, 2):
        raise ConfigError(f"model.channels={model.channels}: EnCodec models are mono or stereo")
    try:
        bits_per_code(model.codebook_size)
    except ValueError as error:
        raise ConfigError(f"model.codebook_size: {error}") from None
    bandwidths = list(model.target_bandwidths)
    if not bandwidths:
        raise ConfigError("model.target_bandwidths is empty")
    frame_rate = latent_frame_rate(model.sample_rate, math.prod(model.ratios))
    for bandwidth in bandwidths:
        if not isinstance(bandwidth, (int, float)):
            raise ConfigError(f"model.target_bandwidths contains {bandwidth!r}: not a number")
        try:
            codebooks_for_bandwidth(
                bandwidth,
                model.codebook_size,
                frame_rate,
                strict=model.get("strict_bandwidths", True),
            )
        except ValueError as error:
            raise ConfigError(f"model.target_bandwidths contains {bandwidth!r}: {error}") from None


def check_manifests(data: DictConfig) -> None:
    """Every manifest the data module will read exists; the error names every one missing."""
    missing = [
        (key, path)
        for key in ("train_manifests", "valid_manifests")
        for path in dict.fromkeys(data.get(key) or [])  # each path once per key, in order
        if not Path(path).exists()
    ]
    if missing:
        count = len({path for _, path in missing})  # valid_manifests often repeats train's
        raise ConfigError(
            f"{count} manifest(s) do not exist (write them with the recipes in recipes/, see "
            "docs/data.md, or correct the paths):"
            + "".join(f"\n  data.{key}: manifest {path}" for key, path in missing)
        )


def check_training(cfg: DictConfig) -> None:
    precision = cfg.trainer.get("precision", "32-true")
    if precision in UNSUPPORTED_PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision!r}: fp16 needs a gradient scaler that the GAN step "
            "does not use; choose bf16-mixed or 32-true"
        )
    probability = cfg.training.discriminator_update_prob
    if not 0 <= probability <= 1:
        raise ConfigError(f"training.discriminator_update_prob={probability} must lie in [0, 1]")
    if cfg.checkpoint_every_n_steps < 1:
        raise ConfigError(f"checkpoint_every_n_steps={cfg.checkpoint_every_n_steps} must be ≥ 1")


def check_config(cfg: DictConfig) -> None:
    """All checks that need no data on disk (manifests are checked once the demo exists)."""
    check_model(cfg.model)
    check_training(cfg)
