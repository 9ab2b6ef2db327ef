"""The EnCodec codec in plain PyTorch (no Lightning, Hydra or W&B imports)."""

from encodec_train.model.bandwidth import (
    bandwidth_per_codebook,
    check_target_bandwidths,
    codebooks_for_bandwidth,
    latent_frame_rate,
)
from encodec_train.model.checkpoint import CheckpointMismatchError, save_model
from encodec_train.model.encodec import CodecOutput, EncodecModel, EncodedFrame
from encodec_train.model.presets import encodec_24khz, encodec_48khz, encodec_tiny
from encodec_train.model.quantizer import QuantizerOutput, ResidualVectorQuantizer

__all__ = [
    "CheckpointMismatchError",
    "CodecOutput",
    "EncodedFrame",
    "EncodecModel",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "bandwidth_per_codebook",
    "check_target_bandwidths",
    "codebooks_for_bandwidth",
    "encodec_24khz",
    "encodec_48khz",
    "encodec_tiny",
    "latent_frame_rate",
    "save_model",
]
