"""Validation's SI-SNR is the evaluation's `si_snr_mean`, through Lightning's epoch means:
silent references left out and counted, an all-silent epoch NaN with its count."""

from __future__ import annotations

import math
import statistics

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from run_helpers import CONF_DIR
from torch.utils.data import DataLoader

from encodec_train.evaluation.metrics import SILENCE_DB, si_snr, si_snr_mean
from encodec_train.training.builder import build_module

SEGMENT = 4800  # 0.2 s at 24 kHz


def batch(*loud: bool) -> dict[str, torch.Tensor]:
    """Mono segments, noise at −20 dBFS where `loud`, else silence."""
    generator = torch.Generator().manual_seed(len(loud) + 10 * sum(loud))
    audio = 0.1 * torch.randn(len(loud), 1, SEGMENT, generator=generator)
    audio *= torch.tensor(loud, dtype=torch.float32)[:, None, None]
    return {"audio": audio, "mask": torch.ones(len(loud), 1, SEGMENT)}


def validate(module, batches: list[dict[str, torch.Tensor]]) -> dict[str, float]:
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    return trainer.validate(module, DataLoader(batches, batch_size=None), verbose=False)[0]


@pytest.fixture(scope="module")
def module():
    """The demo's module, its codebooks initialised by one training-mode pass (untrained
    ones decode every input to a constant, whose SI-SNR is the same for every segment)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        module = build_module(compose("config"))
    with torch.no_grad():
        module.generator.train()(batch(True, True, True, True)["audio"])
    return module


def test_the_shipped_threshold_is_the_evaluations(module):
    assert module.si_snr_silence_db == SILENCE_DB


def test_validation_logs_the_evaluation_si_snr_over_the_segments_that_are_not_silent(module):
    # A half-silent batch, a normal one, and an all-silent one that must weigh nothing.
    batches = [batch(True, False), batch(True, True), batch(False, False)]
    logged = validate(module, batches)
    generator = module.generator.eval()
    real = torch.cat([b["audio"] for b in batches])
    for bandwidth in generator.target_bandwidths:
        with torch.no_grad():
            fake = torch.cat([generator(b["audio"], bandwidth).audio for b in batches])
        expected = si_snr_mean(fake, real)
        assert (expected.scored, expected.silent) == (3, 3)
        assert logged[f"valid/si_snr@{bandwidth:g}kbps"] == pytest.approx(
            float(expected.value), abs=1e-4
        )
        assert logged[f"valid/si_snr_silent@{bandwidth:g}kbps"] == 3


def test_validation_logs_the_median_over_every_segment_that_is_not_silent(module):
    """Four scored segments over three batches: the median is the mean of the middle two,
    computed here with Python's `statistics` on each segment's SI-SNR."""
    batches = [batch(True, False, True), batch(True), batch(False, True)]
    logged = validate(module, batches)
    generator = module.generator.eval()
    for bandwidth in generator.target_bandwidths:
        scores = []
        for b in batches:
            with torch.no_grad():
                fake = generator(b["audio"], bandwidth).audio
            for real_segment, fake_segment in zip(b["audio"], fake, strict=True):
                if real_segment.abs().max() > 0:
                    scores.append(float(si_snr(fake_segment, real_segment)))
        assert len(scores) == 4 and len(set(scores)) == 4
        assert logged[f"valid/si_snr_median@{bandwidth:g}kbps"] == pytest.approx(
            statistics.median(scores), abs=1e-4
        )


def test_an_all_silent_validation_logs_nan_and_counts_every_segment(module):
    logged = validate(module, [batch(False, False), batch(False)])
    for bandwidth in module.generator.target_bandwidths:
        assert math.isnan(logged[f"valid/si_snr@{bandwidth:g}kbps"])
        assert math.isnan(logged[f"valid/si_snr_median@{bandwidth:g}kbps"])
        assert logged[f"valid/si_snr_silent@{bandwidth:g}kbps"] == 3
        assert math.isfinite(logged[f"valid/mel@{bandwidth:g}kbps"])
