"""Checks of a composed config that must fail before any model is built or GPU touched."""

from __future__ import annotations

import collections.abc
import inspect
import math
import types
import typing
from pathlib import Path

from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, OmegaConf

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
        if data.get("impulse_responses") is None:
            raise ConfigError(
                f"data.reverb_probability={data.reverb_probability} reads "
                "data.impulse_responses, which is null: give the manifest that "
                "recipes/dns_challenge.py --impulse-responses writes, or set "
                "data.reverb_probability=0"
            )
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


def ranks(devices: object, num_nodes: int) -> int:
    """Training processes of a run: `trainer.devices` (a count or a list of device indices)
    times `trainer.num_nodes`."""
    if isinstance(devices, (list, tuple, ListConfig)):
        per_node = len(devices)
    elif isinstance(devices, int) and not isinstance(devices, bool) and devices > 0:
        per_node = devices
    else:
        raise ConfigError(
            f"trainer.devices={devices!r}: give the number of devices per node (or a list of "
            "them), so the global batch can be split over the ranks"
        )
    return per_node * num_nodes


def per_rank_batch(
    global_batch_size: int | None, devices: object, num_nodes: int, unset: int | None = None
) -> int:
    """The segments each rank loads per update: `training.global_batch_size` split evenly
    over the run's ranks (an error when it does not divide); `unset` per rank when no global
    batch is set and the data config has a default of its own."""
    if global_batch_size is None and unset is not None:
        return unset
    if global_batch_size is None:
        raise ConfigError(
            "data.batch_size is derived from training.global_batch_size, which is null: set "
            "one of them"
        )
    count = ranks(devices, num_nodes)
    if global_batch_size % count:
        raise ConfigError(
            f"training.global_batch_size={global_batch_size} does not divide over {count} ranks "
            f"(trainer.devices={devices} × trainer.num_nodes={num_nodes}); choose a global "
            "batch that is a multiple of the ranks, or set data.batch_size per rank and "
            "training.global_batch_size=null"
        )
    return global_batch_size // count


def check_batch(cfg: DictConfig) -> str:
    """The effective batch per update, checked against `training.global_batch_size` when one
    is set (a `data.batch_size` given per rank on the command line must still add up to it);
    returns it in words for the start-up log and the dry run."""
    count = ranks(cfg.trainer.devices, cfg.trainer.num_nodes)
    wanted = cfg.training.get("global_batch_size")
    if wanted is not None and OmegaConf.is_interpolation(cfg.data, "batch_size"):
        per_rank_batch(wanted, cfg.trainer.devices, cfg.trainer.num_nodes)  # its own message
    per_rank = cfg.data.batch_size
    if wanted is not None and per_rank * count != wanted:
        raise ConfigError(
            f"data.batch_size={per_rank} × {count} ranks = {per_rank * count} segments per "
            f"update, but training.global_batch_size={wanted}: drop the data.batch_size "
            "override (it is derived from the global batch), or set "
            f"training.global_batch_size={per_rank * count}"
        )
    seconds = cfg.data.segment_seconds
    return (
        f"effective batch: {per_rank * count} segments × {seconds:g} s per update = "
        f"{per_rank} per rank × {count} ranks (trainer.devices={cfg.trainer.devices} × "
        f"trainer.num_nodes={cfg.trainer.num_nodes})"
    )


def check_config(cfg: DictConfig) -> str:
    """All checks that need no data on disk (manifests are checked once the demo exists);
    returns the effective batch in words (`check_batch`)."""
    batch = check_batch(cfg)  # first: the other checks resolve data.batch_size too
    check_types(cfg)
    check_model(cfg.model)
    check_training(cfg)
    return batch


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
