"""Checkpoints in and out in other projects' formats: the official `encodec` package's state
dicts and Hugging Face `EncodecModel` directories; `load_pretrained` reads those and ours (our
own model files and training checkpoints are in `encodec_train.model.checkpoint`). Nothing here
downloads anything.

Our generator's keys already follow the official module layout; only the weight-norm tensor
names differ (`parametrizations.weight.original0/1` here, `weight_g`/`weight_v` officially).
Hugging Face renames modules (`encoder.model.` → `encoder.layers.`, `.conv.conv.` → `.conv.`,
`quantizer.vq.layers.N._codebook.` → `quantizer.layers.N.codebook.`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from encodec_train.model import EncodecModel, encodec_24khz, encodec_48khz
from encodec_train.model.bandwidth import bandwidth_per_codebook
from encodec_train.model.checkpoint import (
    CheckpointMismatchError,
    PretrainedWeights,
    load_weights,
    read_own_checkpoint,
)

# Official (old-style weight norm) ↔ ours (parametrization) tensor names.
_WEIGHT_NORM_NAMES = (
    (".parametrizations.weight.original0", ".weight_g"),
    (".parametrizations.weight.original1", ".weight_v"),
)
_HF_MODULE_RENAMES = (
    (r"^(encoder|decoder)\.model\.", r"\1.layers."),
    (r"\.conv\.conv\.", ".conv."),
    (r"\.convtr\.convtr\.", ".conv."),
    (r"\.(conv|convtr)\.norm\.", ".norm."),
    (r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.codebook."),
)


def _official_name(key: str) -> str:
    for ours, theirs in _WEIGHT_NORM_NAMES:
        key = key.replace(ours, theirs)
    return key


def _parametrized_name(key: str) -> str:
    for ours, theirs in _WEIGHT_NORM_NAMES:
        key = key.replace(theirs, ours)
    return key


def _hf_name(key: str) -> str:
    for pattern, replacement in _HF_MODULE_RENAMES:
        key = re.sub(pattern, replacement, key)
    return key


def to_official_state_dict(model: EncodecModel) -> dict[str, torch.Tensor]:
    """Our generator's weights in the official `encodec` package's key names."""
    return {_official_name(k): v.detach().clone() for k, v in model.state_dict().items()}


def to_hf_state_dict(model: EncodecModel) -> dict[str, torch.Tensor]:
    """Our generator's weights in transformers' `EncodecModel` key names."""
    return {_hf_name(k): v.detach().clone().contiguous() for k, v in model.state_dict().items()}


def _rename_into(
    model: nn.Module, state: Mapping[str, torch.Tensor], rename
) -> dict[str, torch.Tensor]:
    """Map a foreign state dict onto `model`'s keys by renaming `model`'s own keys with
    `rename` and looking them up (so every direction uses one forward mapping). Keys with no
    counterpart keep their name, for `load_weights` to report."""
    lookup = {_parametrized_name(rename(k)): k for k in model.state_dict()}
    renamed = (_parametrized_name(k) for k in state)
    return {lookup.get(k, k): v for k, v in zip(renamed, state.values(), strict=True)}


# -- official encodec package ----------------------------------------------------------


def official_model_for(state: Mapping[str, torch.Tensor]) -> EncodecModel:
    """Build the preset whose architecture fits an official state dict: time-group norm and
    2 channels mean `encodec_48khz`, weight norm `encodec_24khz`; the codebook count sets
    the largest bandwidth."""
    keys = {_parametrized_name(k) for k in state}
    n_q = len({k.split(".")[3] for k in keys if k.startswith("quantizer.vq.layers.")})
    if "encoder.model.0.conv.norm.weight" in keys:
        model = encodec_48khz()
    elif "encoder.model.0.conv.conv.parametrizations.weight.original1" in keys:
        model = encodec_24khz()
    else:
        raise CheckpointMismatchError(
            "not an EnCodec state dict: no 'encoder.model.0.conv.conv' weights"
        )
    per_codebook = bandwidth_per_codebook(model.quantizer.codebook_size, model.frame_rate)
    if n_q != model.quantizer.n_q:
        bandwidths = [b for b in model.target_bandwidths if b <= n_q * per_codebook]
        model = type(model)(**{**model.config, "target_bandwidths": bandwidths})
    return model


def load_official(path: str | Path) -> EncodecModel:
    """An official EnCodec checkpoint (e.g. `encodec_24khz-d7cc33bc.th`) as our model."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = official_model_for(state)
    load_weights(model, _rename_into(model, state, _official_name), str(path))
    return model.eval()


def load_codec(path: str | Path) -> EncodecModel:
    """A codec in eval mode from any format we read: one of our checkpoints or model files, an
    official `.th` state dict, or a Hugging Face `EncodecModel` folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"codec checkpoint {path} does not exist")
    if path.is_dir():
        return load_hf(path).eval()
    if path.suffix == ".th":
        return load_official(path)
    try:
        return EncodecModel.from_checkpoint(path).eval()
    except CheckpointMismatchError as ours:
        try:
            return load_official(path)
        except CheckpointMismatchError as official:
            raise CheckpointMismatchError(f"{ours}; nor an official one: {official}") from None


def export_official(model: EncodecModel, path: str | Path) -> Path:
    """Write our generator as the official package's state dict (loads with
    `encodec.EncodecModel.load_state_dict`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(to_official_state_dict(model), path)
    return path


# -- Hugging Face transformers ----------------------------------------------------------


def hf_config(model: EncodecModel) -> dict[str, Any]:
    """transformers `EncodecConfig` fields for our model."""
    c = model.config
    return {
        "model_type": "encodec",
        "architectures": ["EncodecModel"],
        "target_bandwidths": model.target_bandwidths,
        "sampling_rate": c["sample_rate"],
        "audio_channels": c["channels"],
        "normalize": c["normalize"],
        "chunk_length_s": c["segment_seconds"],
        "overlap": c["overlap"] if c["segment_seconds"] is not None else None,
        "hidden_size": c["dimension"],
        "num_filters": c["n_filters"],
        "num_residual_layers": c["n_residual_layers"],
        "upsampling_ratios": list(c["ratios"]),
        "norm_type": c["norm"],
        "kernel_size": 7,
        "last_kernel_size": 7,
        "residual_kernel_size": 3,
        "dilation_growth_rate": 2,
        "use_causal_conv": c["causal"],
        "pad_mode": c["pad_mode"],
        "compress": 2,
        "num_lstm_layers": c["lstm_layers"],
        "trim_right_ratio": c["trim_right_ratio"],
        "codebook_size": c["codebook_size"],
        "codebook_dim": c["dimension"],
        "use_conv_shortcut": True,
    }


def _model_config_from_hf(config: Mapping[str, Any]) -> dict[str, Any]:
    unsupported = {
        key: config[key]
        for key, value in (
            ("kernel_size", 7),
            ("last_kernel_size", 7),
            ("residual_kernel_size", 3),
            ("dilation_growth_rate", 2),
            ("compress", 2),
            ("use_conv_shortcut", True),
        )
        if config.get(key, value) != value
    }
    if config.get("codebook_dim", config.get("hidden_size", 128)) != config.get("hidden_size", 128):
        unsupported["codebook_dim"] = config["codebook_dim"]
    if unsupported:
        raise CheckpointMismatchError(f"unsupported Hugging Face EnCodec settings: {unsupported}")
    return dict(
        sample_rate=config.get("sampling_rate", 24_000),
        channels=config.get("audio_channels", 1),
        target_bandwidths=config.get("target_bandwidths", [1.5, 3.0, 6.0, 12.0, 24.0]),
        causal=config.get("use_causal_conv", True),
        norm=config.get("norm_type", "weight_norm"),
        normalize=config.get("normalize", False),
        segment_seconds=config.get("chunk_length_s"),
        overlap=config.get("overlap") or 0.01,
        n_filters=config.get("num_filters", 32),
        dimension=config.get("hidden_size", 128),
        ratios=config.get("upsampling_ratios", [8, 5, 4, 2]),
        n_residual_layers=config.get("num_residual_layers", 1),
        lstm_layers=config.get("num_lstm_layers", 2),
        pad_mode=config.get("pad_mode", "reflect"),
        trim_right_ratio=config.get("trim_right_ratio", 1.0),
        codebook_size=config.get("codebook_size", 1024),
    )


def export_hf(model: EncodecModel, directory: str | Path) -> Path:
    """Write a directory that `transformers.EncodecModel.from_pretrained` loads: config.json,
    model.safetensors and preprocessor_config.json (the feature extractor)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(hf_config(model), indent=2))
    preprocessor = {
        "feature_extractor_type": "EncodecFeatureExtractor",
        "feature_size": model.channels,
        "sampling_rate": model.sample_rate,
        "chunk_length_s": model.segment_seconds,
        "overlap": model.overlap if model.segment_seconds is not None else None,
        "padding_side": "right",
        "padding_value": 0.0,
        "return_attention_mask": True,
    }
    (directory / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    save_file(to_hf_state_dict(model), str(directory / "model.safetensors"))
    return directory


def _read_hf_directory(directory: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(
            f"{directory} is not a Hugging Face model directory: no config.json"
        )
    config = json.loads(config_file.read_text())
    if config.get("model_type") != "encodec":
        raise CheckpointMismatchError(
            f"{config_file}: model_type={config.get('model_type')!r}, expected 'encodec'"
        )
    if (directory / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(directory / "model.safetensors"))
    elif (directory / "pytorch_model.bin").is_file():
        state = torch.load(directory / "pytorch_model.bin", map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"{directory}: neither model.safetensors nor pytorch_model.bin")
    return config, state


def load_hf(directory: str | Path) -> EncodecModel:
    """A Hugging Face `EncodecModel` directory (from `save_pretrained`) as our model."""
    directory = Path(directory)
    config, state = _read_hf_directory(directory)
    model = EncodecModel(**_model_config_from_hf(config))
    load_weights(model, _rename_into(model, state, _hf_name), str(directory))
    return model.eval()


# -- any of the formats, for fine-tuning ---------------------------------------------


def load_pretrained(
    path: str | Path, model: EncodecModel, use_ema: bool = True
) -> PretrainedWeights:
    """Read generator (and discriminator) weights for `model` from an official `.th` state
    dict, a Hugging Face directory, or one of our checkpoints, in our key names."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"init_from: {path} does not exist")
    if path.is_dir():
        config, state = _read_hf_directory(path)
        return PretrainedWeights(_rename_into(model, state, _hf_name), None, None, str(path))
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    own = read_own_checkpoint(checkpoint, use_ema, str(path))
    if own is not None:
        return own
    generator = _rename_into(model, checkpoint, _official_name)
    return PretrainedWeights(generator, None, None, str(path))
