"""A 48 kHz stereo configuration trains on the CPU as the paper's 48 kHz recipe does: one
discriminator per bandwidth judging left and right apart, reverberated training data."""

from __future__ import annotations

import pytest
from run_helpers import demo_config, logged_steps

from encodec_train.data.synth import write_room_responses
from encodec_train.training.builder import fit


@pytest.mark.slow
def test_tiny_48khz_stereo_trains_with_per_bandwidth_discriminators_and_reverb(tmp_path, corpus):
    rooms = write_room_responses(tmp_path / "rooms", [0.2, 0.5, 0.9, 1.2, 1.8])
    module, trainer, _ = fit(
        demo_config(
            tmp_path,
            "model=tiny_48khz",
            "discriminator.separate_channels=true",
            "training.discriminator_per_bandwidth=true",
            "data.reverb_probability=1.0",  # every eligible example, so this run uses them
            f"data.impulse_responses={rooms}",
            "trainer.max_steps=2",
            "trainer.max_epochs=-1",
            corpus=corpus,
        )
    )
    assert trainer.global_step == 2
    assert module.generator.sample_rate == 48000 and module.generator.channels == 2
    assert module.adversarial.copies == 3
    assert trainer.datamodule.train_dataset.reverb is not None
    assert len(trainer.datamodule.train_dataset.reverb) == 3  # RT60 0.3-1.3 s kept
    rows = logged_steps(tmp_path / "run")
    assert all(row["train/loss_mel"] > 0 for row in rows)
