"""Checks of a composed config that must fail before any model is built or GPU touched."""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from pathlib import Path

from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig

from encodec_train.model.bandwidth import bits_per_code, codebooks_for_bandwidth, latent_frame_rate

UNSUPPORTED_PRECISIONS = ("16-mixed", "16", 16, "16-true")


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key."""


def check_model(model: DictConfig) -> None:
    """Bandwidths and codebook size that the codec can honour, checked by the model's own
    bandwidth arithmetic before the demo corpus is written, with the config key in the
    message (everything else the model refuses, it refuses when built, before training)."""
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
    wanted = {key: list(data.get(key) or []) for key in ("train_manifests", "valid_manifests")}
    if data.get("reverb_probability", 0) > 0:  # the impulse responses are read too
        wanted["impulse_responses"] = [data.impulse_responses]
    missing = [
        (key, path)
        for key, paths in wanted.items()
        for path in dict.fromkeys(paths)  # each path once per key, in order
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
            f"trainer.precision={precision!r}: both optimizers now step through Lightning's "
            "precision plugin, but fp16 with its shared gradient scaler has not been run on a "
            "GPU here; choose bf16-mixed (the recipes' default) or 32-true"
        )
    if cfg.checkpoint_every_n_steps < 1:
        raise ConfigError(f"checkpoint_every_n_steps={cfg.checkpoint_every_n_steps} must be ≥ 1")


def check_config(cfg: DictConfig) -> None:
    """All checks that need no data on disk (manifests are checked once the demo exists)."""
    check_types(cfg)
    check_model(cfg.model)
    check_training(cfg)


def check_types(cfg: DictConfig, key: str = "") -> None:
    """Every value given to a `_target_` matches the type its parameter declares (float, int,
    bool, str, lists, and their optional/union forms), so `optim.generator.lr=abc` fails here,
    naming the key, instead of deep inside training after a checkpoint was restored."""
    for name, value in cfg.items():
        if isinstance(value, DictConfig):
            check_types(value, f"{key}{name}.")
    if "_target_" not in cfg:
        return
    try:
        target = _locate(cfg._target_)
        hints = typing.get_type_hints(target.__init__ if inspect.isclass(target) else target)
    except Exception:  # noqa: BLE001 - unknown targets are instantiate's to report
        return
    for name, value in cfg.items():
        if name.startswith("_") or name not in hints or isinstance(value, DictConfig):
            continue
        if not _matches(value, hints[name]):
            raise ConfigError(
                f"{key}{name}={value!r}: expected {_describe(hints[name])}, "
                f"got {type(value).__name__}"
            )


def _matches(value: object, hint: object) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint in (bool, str):
        return isinstance(value, hint)
    if origin is typing.Literal:
        return value in typing.get_args(hint)
    if origin in (list, tuple, collections.abc.Sequence):
        return isinstance(value, (list, tuple, ListConfig))
    if inspect.isclass(hint) and origin is None:
        return isinstance(value, hint)  # e.g. a Tensor (torch's lr) is never a config string
    return True  # anything richer (mappings, callables) is instantiate's to check


def _describe(hint: object) -> str:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in typing.get_args(hint))
    return "None" if hint is type(None) else getattr(hint, "__name__", str(hint))
