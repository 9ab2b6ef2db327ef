"""Every random stream a training step may touch, captured into and restored from checkpoints.

The step's own draws (bandwidth, discriminator update, k-means and dead-code rows) come from
the module's generator; torch's, NumPy's and Python's global streams are saved too, for any
code (augmentations, user callbacks) that still uses them.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def capture_rng_states(module_rng: torch.Generator) -> dict[str, Any]:
    """States of the module's generator and of the global streams, in plain tensors and
    numbers (the checkpoint loads with `weights_only=True`)."""
    states: dict[str, Any] = {
        "module": module_rng.get_state(),
        "torch": torch.get_rng_state(),
        # As a tensor and plain numbers, so the checkpoint loads with `weights_only=True`.
        "numpy": _numpy_state_to_tensors(np.random.get_state()),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state()
    return states


def _numpy_state_to_tensors(state: tuple) -> tuple:
    kind, keys, position, has_gauss, cached = state
    return kind, torch.from_numpy(keys.copy()), int(position), int(has_gauss), float(cached)


def restore_rng_states(states: dict[str, Any], module_rng: torch.Generator) -> None:
    module_rng.set_state(states["module"])
    torch.set_rng_state(states["torch"])
    kind, keys, position, has_gauss, cached = states["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
    random.setstate(states["python"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state(states["cuda"])
