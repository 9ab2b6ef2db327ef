"""Loading the codec and the entropy model that a `.ecdc` file needs, from any of the formats
we accept, and fingerprinting the codec's weights (so a file names the weights it needs)."""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from encodec_train.convert import load_codec  # noqa: F401 - the codec loader of .ecdc files
from encodec_train.model import CheckpointMismatchError
from encodec_train.model.checkpoint import _prefixed, load_weights
from encodec_train.model.lm import EntropyModel

LM_FILE_KEY = "encodec_train_lm"
OFFICIAL_CONTEXT_SECONDS = 3.5
"""The official entropy models attend to int(3.5 × frame rate) past steps."""


def save_entropy_model(lm: EntropyModel, path: str | Path) -> Path:
    """A self-contained entropy-model file: its config and weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({LM_FILE_KEY: {"config": lm.config, "state_dict": lm.state_dict()}}, path)
    return path


def load_entropy_model(path: str | Path, frame_rate: int | None = None) -> EntropyModel:
    """An entropy model from one of our training checkpoints (`+recipe=*_lm`), a file of
    `save_entropy_model`, or the official state dict (`encodec_lm_24khz-1608e3c0.th`; its
    attention context, int(3.5 × `frame_rate`) steps, is not in the file); in eval mode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"entropy model {path} does not exist")
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    kind = entropy_model_kind(checkpoint)
    if kind == "file":
        config, state = checkpoint[LM_FILE_KEY]["config"], checkpoint[LM_FILE_KEY]["state_dict"]
    elif kind == "training":
        config, state = checkpoint["lm_config"], _prefixed(checkpoint["state_dict"], "lm.")
    elif kind == "official":
        if frame_rate is None:
            raise ValueError(f"{path} is an official entropy model: give the codec's frame rate")
        config, state = official_config(checkpoint, frame_rate), checkpoint
    else:
        raise CheckpointMismatchError(
            f"{path} is not an entropy model (neither ours nor the official state dict)"
        )
    lm = EntropyModel(**config)
    load_weights(lm, state, str(path))
    return lm.eval()


def entropy_model_kind(checkpoint: Mapping[str, Any]) -> str | None:
    """How a loaded file holds an entropy model: "file" (`save_entropy_model`), "training" (a
    `+recipe=*_lm` checkpoint), "official" (the official state dict), or None (it does not)."""
    if LM_FILE_KEY in checkpoint:
        return "file"
    if "lm_config" in checkpoint:
        return "training"
    if "emb.0.weight" in checkpoint:
        return "official"
    return None


def holds_entropy_model(path: str | Path) -> bool:
    """Whether the file at `path` is an entropy model in a format `load_entropy_model` reads
    (False for folders and for files torch cannot load)."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError):
        return False
    return isinstance(checkpoint, Mapping) and entropy_model_kind(checkpoint) is not None


def official_config(state: dict[str, torch.Tensor], frame_rate: int) -> dict:
    """`EntropyModel` arguments of an official entropy-model state dict (8 heads, as every
    official model)."""
    layers = {key.split(".")[2] for key in state if key.startswith("transformer.layers.")}
    return {
        "n_q": len([key for key in state if key.startswith("emb.")]),
        "codebook_size": state["emb.0.weight"].shape[0] - 1,
        "dim": state["emb.0.weight"].shape[1],
        "num_heads": 8,
        "num_layers": len(layers),
        "feed_forward": state["transformer.layers.0.linear1.weight"].shape[0],
        "past_context": int(OFFICIAL_CONTEXT_SECONDS * frame_rate),
    }


def fingerprint(module: torch.nn.Module) -> str:
    """16 hex digits of a hash of the module's tensors (names, shapes and values)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, tensor in module.state_dict().items():
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype}".encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
