"""The official EnCodec configurations (paper §3.1) and a tiny one for tests and the demo.

Each preset is the model group's YAML file (`encodec_train/conf/model/<file>.yaml`, the one
home of these values, which training composes too), read here with OmegaConf alone, so
notebooks need no Hydra.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from encodec_train import CONFIG_DIR
from encodec_train.model.encodec import EncodecModel


def preset_config(file: str) -> dict[str, Any]:
    """The constructor arguments of `conf/model/<file>.yaml`, its defaults list merged in."""
    return OmegaConf.to_container(_load(file), resolve=True)


def _load(file: str) -> DictConfig:
    node = OmegaConf.load(CONFIG_DIR / "model" / f"{file}.yaml")
    merged = OmegaConf.create()
    defaults = node.pop("defaults", ["_self_"])
    for entry in defaults:
        merged = OmegaConf.merge(merged, node if entry == "_self_" else _load(entry))
    for key in ("_target_", "_convert_"):
        merged.pop(key, None)
    return merged


def encodec_24khz(**overrides: Any) -> EncodecModel:
    """Streaming 24 kHz mono codec: causal, weight norm, 1.5/3/6/12/24 kbps (2–32 codebooks)."""
    return EncodecModel(**{**preset_config("encodec_24khz"), **overrides})


def encodec_48khz(**overrides: Any) -> EncodecModel:
    """Non-streaming 48 kHz stereo codec: time-group norm, 1 s chunks with 1% overlap and
    per-chunk RMS normalisation, 3/6/12/24 kbps (2–16 codebooks)."""
    return EncodecModel(**{**preset_config("encodec_48khz"), **overrides})


def encodec_tiny(**overrides: Any) -> EncodecModel:
    """A small streaming 24 kHz mono codec (about 0.7 M parameters) that trains on a CPU:
    the demo's model (`conf/model/tiny.yaml`, where each choice is explained)."""
    return EncodecModel(**{**preset_config("tiny"), **overrides})
