"""Signals the evaluation tests share: synthetic speech and music from the demo synthesiser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from encodec_train.data.synth import music_like, speech_like


@pytest.fixture(scope="session")
def speech() -> torch.Tensor:
    """3 s of synthetic speech at 16 kHz, [1, time], RMS −20 dBFS."""
    audio = torch.from_numpy(speech_like(3.0, 16000, 140.0, np.random.default_rng(0)))[None]
    return (audio * 0.1 / audio.pow(2).mean().sqrt()).float()


@pytest.fixture(scope="session")
def music() -> torch.Tensor:
    """3 s of synthetic music at 48 kHz, mono [1, time], RMS −20 dBFS."""
    audio = torch.from_numpy(music_like(3.0, 48000, np.random.default_rng(1))).mean(0)[None]
    return (audio * 0.1 / audio.pow(2).mean().sqrt()).float()
