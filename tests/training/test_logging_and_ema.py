"""Audio examples, W&B offline logging and the generator EMA, on short demo runs."""

from __future__ import annotations

import lightning as L
import pytest
import soundfile as sf
import torch
from run_helpers import demo_config, logged_steps

from encodec_train.model import EncodecModel
from encodec_train.training.builder import fit


def test_audio_examples_are_the_model_output_at_every_bandwidth(tmp_path, corpus):
    cfg = demo_config(
        tmp_path, "trainer.max_steps=2", "audio_examples_every_n_steps=2", corpus=corpus
    )
    module, _, datamodule = fit(cfg)
    folder = tmp_path / "run" / "examples" / "step_0000002"
    reference = next(iter(datamodule.val_dataloader()))["audio"][:2]
    module.generator.eval()
    for bandwidth in module.generator.target_bandwidths:
        with torch.no_grad():
            expected = module.generator(reference, bandwidth).audio.clamp(-1, 1)
        for item in range(2):
            audio, rate = sf.read(folder / f"{bandwidth:g}kbps_{item}.wav", always_2d=True)
            assert rate == module.generator.sample_rate
            # 16-bit PCM: within one quantisation step.
            torch.testing.assert_close(
                torch.from_numpy(audio.T).float(), expected[item], atol=1 / 32768 + 1e-6, rtol=0
            )
    audio, _ = sf.read(folder / "reference_0.wav", always_2d=True)
    torch.testing.assert_close(
        torch.from_numpy(audio.T).float(), reference[0].clamp(-1, 1), atol=1 / 32768 + 1e-6, rtol=0
    )


def test_audio_examples_without_validation_data_use_the_first_training_batch(tmp_path, corpus):
    """Without validation data the examples once raised StopIteration inside the training
    loop, which Lightning took for the end of the epoch: the run stopped at step 1."""
    cfg = demo_config(
        tmp_path,
        "data.valid_manifests=null",
        "trainer.limit_val_batches=0",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "audio_examples_every_n_steps=1",
        corpus=corpus,
    )
    _, trainer, _ = fit(cfg)
    assert trainer.global_step == 3
    for step in (1, 2, 3):
        assert (tmp_path / "run" / "examples" / f"step_{step:07d}" / "reference_0.wav").exists()


def test_wandb_offline_run_needs_no_network(tmp_path, corpus, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    module, trainer, _ = fit(
        demo_config(
            tmp_path, "logger=wandb", "trainer.max_steps=2", "run_name=offline", corpus=corpus
        )
    )
    import wandb

    wandb.finish()
    run_id = (tmp_path / "run" / "run_id").read_text().strip()
    assert run_id != "offline" and len(run_id) == 12  # not the run name, which others share
    runs = list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(runs) == 1, list((tmp_path / "run").rglob("*"))[:20]
    assert any(runs[0].glob("*.wandb"))
    assert "train/loss_mel" in module.last_logged
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["wandb_run_id"] == run_id
    # The resume continues the same W&B run id.
    fit(
        demo_config(
            tmp_path, "logger=wandb", "trainer.max_steps=3", "run_name=offline", corpus=corpus
        )
    )
    wandb.finish()
    assert len(list((tmp_path / "run" / "wandb").glob(f"offline-run-*-{run_id}"))) == 2


class ParameterRecorder(L.Callback):
    """The generator's parameters before training and after each step."""

    def __init__(self) -> None:
        self.snapshots: list[dict[str, torch.Tensor]] = []

    def _record(self, pl_module) -> None:
        self.snapshots.append(
            {k: v.detach().clone() for k, v in pl_module.generator.named_parameters()}
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self._record(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._record(pl_module)


def test_generator_ema_follows_the_closed_form_and_is_exported(tmp_path, corpus):
    # A callback of one's own, added from the command line like any other.
    recorder_target = f"+callbacks.recorder._target_={__name__}.ParameterRecorder"
    module, trainer, _ = fit(
        demo_config(
            tmp_path,
            "trainer.max_steps=2",
            "training.ema_decay=0.5",
            recorder_target,
            corpus=corpus,
        )
    )
    recorder = next(c for c in trainer.callbacks if isinstance(c, ParameterRecorder))
    p0, p1, p2 = recorder.snapshots
    ema = dict(module.ema.module.named_parameters())
    for name in p0:
        # ema_2 = 0.5 · (0.5 · p0 + 0.5 · p1) + 0.5 · p2
        expected = 0.25 * p0[name] + 0.25 * p1[name] + 0.5 * p2[name]
        torch.testing.assert_close(ema[name], expected, rtol=1e-5, atol=1e-7, msg=name)
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    exported = EncodecModel.from_checkpoint(last, use_ema=True)
    raw = EncodecModel.from_checkpoint(last, use_ema=False)
    name = "decoder.model.0.conv.conv.bias"
    torch.testing.assert_close(dict(exported.named_parameters())[name], ema[name])
    torch.testing.assert_close(dict(raw.named_parameters())[name], p2[name])


def test_csv_logs_every_n_steps_and_a_resume_keeps_earlier_logs(tmp_path, corpus):
    import csv

    common = ("training.log_every_n_steps=2", "trainer.max_epochs=-1")
    module, _, _ = fit(demo_config(tmp_path, "trainer.max_steps=4", *common, corpus=corpus))
    fit(demo_config(tmp_path, "trainer.max_steps=6", *common, corpus=corpus))  # resume=auto
    logs = sorted((tmp_path / "run" / "logs").glob("version_*/metrics.csv"))
    assert len(logs) == 2
    steps = []
    for path in logs:
        for row in csv.DictReader(path.open()):
            if row.get("train/loss_mel"):
                steps.append(int(row["step"]))
                assert float(row["quantizer/codebook_usage/0"]) > 0
    assert steps == [2, 4, 6]
    # The logged value is the mean of the steps since the previous log: compare with the
    # same run logging every step.
    fit(
        demo_config(
            tmp_path / "every",
            "trainer.max_steps=2",
            "trainer.max_epochs=-1",
            "training.log_every_n_steps=1",
            corpus=corpus,
        )
    )
    per_step = [row["train/loss_mel"] for row in logged_steps(tmp_path / "every" / "run")]
    first = next(csv.DictReader(logs[0].open()))
    assert float(first["train/loss_mel"]) == pytest.approx(sum(per_step) / 2, rel=1e-5)


def test_progress_bar_counts_the_steps_that_will_run_and_shows_losses(monkeypatch):
    """`max_steps=10` in a 40-batch epoch once showed 40 batches, and `v_num` as a metric."""
    from types import SimpleNamespace

    from encodec_train.training.callbacks import TrainingProgressBar

    def trainer(global_step: int, done_in_epoch: int):
        progress = SimpleNamespace(current=SimpleNamespace(completed=done_in_epoch))
        return SimpleNamespace(
            max_epochs=3,
            max_steps=10,
            global_step=global_step,
            num_training_batches=40,
            fit_loop=SimpleNamespace(epoch_loop=SimpleNamespace(batch_progress=progress)),
        )

    bar = TrainingProgressBar()
    bar._trainer = trainer(global_step=0, done_in_epoch=0)
    assert bar.total_train_batches == 10
    bar._trainer = trainer(global_step=4, done_in_epoch=4)  # resumed mid-epoch at step 4
    assert bar.total_train_batches == 10
    bar._trainer = trainer(global_step=0, done_in_epoch=0)
    bar._trainer.max_steps = 100
    assert bar.total_train_batches == 40
    from lightning.pytorch.callbacks import TQDMProgressBar

    monkeypatch.setattr(TQDMProgressBar, "get_metrics", lambda self, t, m: {"v_num": 0})
    module = SimpleNamespace(
        last_logged={"train/loss_mel": 1.23456, "train/discriminator_loss": 2.0}
    )
    assert bar.get_metrics(bar.trainer, module) == {"mel": "1.235", "D": "2.000"}
