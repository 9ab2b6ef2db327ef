"""encodec-train: train EnCodec neural audio codecs as the paper describes."""

from pathlib import Path

CONFIG_DIR = Path(__file__).resolve().parent / "conf"
"""The Hydra config tree shipped with the package (`python -m encodec_train` composes it)."""
