"""The official EnCodec configurations (paper §4.2) and a tiny one for tests and the demo."""

from __future__ import annotations

from typing import Any

from encodec_train.model.encodec import EncodecModel


def encodec_24khz(**overrides: Any) -> EncodecModel:
    """Streaming 24 kHz mono codec: causal, weight norm, 1.5/3/6/12/24 kbps (2–32 codebooks)."""
    config: dict[str, Any] = dict(
        sample_rate=24_000,
        channels=1,
        target_bandwidths=[1.5, 3.0, 6.0, 12.0, 24.0],
        causal=True,
        norm="weight_norm",
        normalize=False,
        segment_seconds=None,
        name="encodec_24khz",
    )
    return EncodecModel(**{**config, **overrides})


def encodec_48khz(**overrides: Any) -> EncodecModel:
    """Non-streaming 48 kHz stereo codec: time-group norm, 1 s chunks with 1% overlap and
    per-chunk RMS normalisation, 3/6/12/24 kbps (2–16 codebooks)."""
    config: dict[str, Any] = dict(
        sample_rate=48_000,
        channels=2,
        target_bandwidths=[3.0, 6.0, 12.0, 24.0],
        causal=False,
        norm="time_group_norm",
        normalize=True,
        segment_seconds=1.0,
        overlap=0.01,
        name="encodec_48khz",
    )
    return EncodecModel(**{**config, **overrides})


def encodec_tiny(**overrides: Any) -> EncodecModel:
    """A small streaming 24 kHz mono codec (about 0.7 M parameters) that trains on a CPU:
    same architecture as `encodec_24khz`, narrower, one LSTM layer, 1.5/3/6 kbps.

    32 codes per codebook keep the codebooks stable at CPU batch sizes: a batch of 4 × 1 s
    gives ~9.4 vectors per code, above the dead-code threshold of 2 (the paper's 64 × 1 s
    gives ~4.7 for 1024 codes); with 1024 codes nearly every code would count as dead each
    step. 32 codes are 5 bits, 0.375 kbps per codebook at 75 frames/s, so 1.5/3/6 kbps are
    exactly 4/8/16 codebooks (64 codes would make them 3.33/6.67/13.33). Unit-norm
    initialisation (`encodec_train.model.init`) keeps it from collapsing to one code.
    Same as `encodec_train/conf/model/tiny.yaml`.
    """
    config: dict[str, Any] = dict(
        sample_rate=24_000,
        channels=1,
        target_bandwidths=[1.5, 3.0, 6.0],
        causal=True,
        norm="weight_norm",
        n_filters=8,
        dimension=64,
        lstm_layers=1,
        codebook_size=32,
        dead_code_threshold=2.0,
        kmeans_iters=10,
        init="unit_norm",
        name="encodec_tiny",
    )
    return EncodecModel(**{**config, **overrides})
