"""Our own model files and training checkpoints: writing a self-contained model file, reading
the generator (and discriminator) weights and model config back, and strict weight loading.

The official and Hugging Face formats are in `encodec_train.convert`, which builds on this.
Nothing here imports `EncodecModel`, so `EncodecModel.from_checkpoint` can import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from encodec_train.model.encodec import EncodecModel

MODEL_FILE_KEY = "encodec_train_model"


class CheckpointMismatchError(ValueError):
    """A checkpoint's tensors do not fit the model they are loaded into."""


@dataclass
class PretrainedWeights:
    """Weights read from a checkpoint, in our key names.

    Attributes:
        generator: state dict for `EncodecModel`.
        discriminator: state dict for the discriminator, when the checkpoint has one.
        model_config: `EncodecModel` arguments, when the checkpoint records them.
        source: a description of where the weights came from (for messages).
    """

    generator: dict[str, torch.Tensor]
    discriminator: dict[str, torch.Tensor] | None
    model_config: dict[str, Any] | None
    source: str


def load_weights(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """`module.load_state_dict(state)` with an error listing every missing, unexpected and
    wrongly shaped tensor (with both shapes) instead of the first failure."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong_shape = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]
    if missing or unexpected or wrong_shape:
        lines = [f"{source} does not match the model's architecture:"]
        for title, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("shape mismatch", wrong_shape),
        ):
            if items:
                lines.append(f"  {title} ({len(items)}): " + "; ".join(items[:20]))
        raise CheckpointMismatchError("\n".join(lines))
    module.load_state_dict(state)


def save_model(model: EncodecModel, path: str | Path) -> Path:
    """Write a self-contained model file: its config and weights (`from_checkpoint` loads it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({MODEL_FILE_KEY: {"config": model.config, "state_dict": model.state_dict()}}, path)
    return path


def _prefixed(state: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def read_own_checkpoint(
    checkpoint: Mapping[str, Any], use_ema: bool, source: str
) -> PretrainedWeights | None:
    """The weights and config in a loaded checkpoint of ours: a model file from `save_model`,
    or a training checkpoint (Lightning dict whose `state_dict` holds `generator.*` and
    `adversarial.discriminator.*`, with the model config alongside). None for anything else.

    With `use_ema`, the EMA generator weights replace the trained ones where the training
    checkpoint holds them.
    """
    if MODEL_FILE_KEY in checkpoint:
        entry = checkpoint[MODEL_FILE_KEY]
        return PretrainedWeights(dict(entry["state_dict"]), None, dict(entry["config"]), source)
    if "state_dict" in checkpoint and "model_config" in checkpoint:
        state = checkpoint["state_dict"]
        generator = _prefixed(state, "generator.")
        ema = checkpoint.get("generator_ema")
        if use_ema and ema:
            generator = {**generator, **ema}
        discriminator = _prefixed(state, "adversarial.discriminator.") or None
        return PretrainedWeights(generator, discriminator, dict(checkpoint["model_config"]), source)
    return None


def read_model_checkpoint(path: str | Path, use_ema: bool = True) -> PretrainedWeights:
    """Read one of our model files or training checkpoints from disk (see
    `read_own_checkpoint`); refuse any other format with a message that names the readers of
    the official and Hugging Face formats."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    own = read_own_checkpoint(checkpoint, use_ema, str(path))
    if own is None:
        raise CheckpointMismatchError(
            f"{path} is not an encodec-train checkpoint (no model config inside); "
            "use convert.load_official or convert.load_hf for other formats"
        )
    return own
