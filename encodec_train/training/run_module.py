"""What every training module of this project shares, whatever it trains.

The codec's GAN module and the entropy model's module both log running means of their metrics
with throughput every `log_every_n_steps` steps, keep a seeded random stream of their own that
a resume restores exactly, record the W&B run a checkpoint belongs to, and know the step the
current process started from (the run summary reports it).
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import WandbLogger

from encodec_train.training.metrics import MetricAccumulator
from encodec_train.training.rng import capture_rng_states, restore_rng_states


class TrainingRunModule(L.LightningModule):
    """Base of the training modules: running-mean logging, random streams, checkpoint basics.

    Args:
        seed: seeds `rng`, the module's own generator (a CPU one: its draws never sync a GPU,
            and every rank draws the same values).
        log_every_n_steps: how often the running means of `train_metrics` are logged.
    """

    throughput_unit = "segments"
    """What one row of a batch is, in the throughput metric's name (`perf/<unit>_per_second`)."""

    def __init__(self, seed: int, log_every_n_steps: int) -> None:
        super().__init__()
        self.log_every_n_steps = log_every_n_steps
        self.rng = torch.Generator().manual_seed(seed)
        self.train_metrics = MetricAccumulator()
        # The latest logged means (the progress bar shows some); the loggers keep the history.
        self.last_logged: dict[str, float] = {}
        # The step this process started training from (None: it trained no step).
        self.start_step: int | None = None
        self._last_log_time: float | None = None
        self._pending_rng_states: dict[str, Any] | None = None

    def logged_counts(self) -> dict[str, float]:
        """Totals logged beside the running means (none here; the codec adds its data's)."""
        return {}

    def _log_running_means(self, batch_size: int) -> None:
        """Log the means of the metrics since the last call, with throughput."""
        means = self.train_metrics.means()
        now = time.perf_counter()
        if self._last_log_time is not None:
            seconds_per_step = (now - self._last_log_time) / self.log_every_n_steps
            means["perf/seconds_per_step"] = torch.tensor(seconds_per_step)
            means[f"perf/{self.throughput_unit}_per_second"] = torch.tensor(
                batch_size * self.trainer.world_size / seconds_per_step
            )
        self._last_log_time = now
        # The one host-device sync of these metrics, every `log_every_n_steps` steps.
        values = {key: float(value) for key, value in means.items()}
        values.update(self.logged_counts())
        # Straight to the loggers, at the step the means end on (Lightning's own step counter
        # for manual optimisation lags by one).
        for logger in self.loggers:
            logger.log_metrics(values, step=self.global_step)
        self.last_logged = values

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The W&B run this checkpoint belongs to (a resume continues it) and every random
        stream; subclasses add what rebuilds their model."""
        checkpoint["wandb_run_id"] = (
            self.logger.version if isinstance(self.logger, WandbLogger) else None
        )
        checkpoint["rng_states"] = capture_rng_states(self.rng)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # Applied at the first batch: creating the DataLoader iterator after the restore draws
        # from torch's global generator, which the interrupted run had not done at this step.
        self._pending_rng_states = checkpoint["rng_states"]

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._pending_rng_states is not None:
            restore_rng_states(self._pending_rng_states, self.rng)
            self._pending_rng_states = None

    def on_train_start(self) -> None:
        self.start_step = self.global_step
