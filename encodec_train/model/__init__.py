"""The EnCodec codec in plain PyTorch (no Lightning, Hydra or W&B imports)."""

from encodec_train.model.encodec import CodecOutput, EncodecModel, EncodedFrame
from encodec_train.model.presets import encodec_24khz, encodec_48khz, encodec_tiny
from encodec_train.model.quantizer import QuantizerOutput, ResidualVectorQuantizer

__all__ = [
    "CodecOutput",
    "EncodedFrame",
    "EncodecModel",
    "QuantizerOutput",
    "ResidualVectorQuantizer",
    "encodec_24khz",
    "encodec_48khz",
    "encodec_tiny",
]
