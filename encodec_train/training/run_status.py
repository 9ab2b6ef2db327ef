"""`<run_dir>/status.json`: where a run stands (running, finished, stopped, failed), the step
it reached, its latest validation metrics and its W&B URL, so `python -m encodec_train.runs`
compares the runs of a folder or a sweep without opening W&B."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.loggers import WandbLogger

from encodec_train.training.callbacks import StopOnSignal
from encodec_train.training.validation import HeldOutValidation

STATUS_FILE = "status.json"


def read_status(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's status (None when it never started training)."""
    path = Path(run_dir) / STATUS_FILE
    return json.loads(path.read_text()) if path.exists() else None


def write_status(run_dir: str | Path, status: dict[str, Any]) -> None:
    """Replace the status atomically (a reader never sees half a file)."""
    path = Path(run_dir) / STATUS_FILE
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(status, indent=1, sort_keys=True))
    os.replace(temporary, path)


class RunStatus(L.Callback):
    """Keeps `status.json` current on the main rank: at the start, at each checkpoint, after
    each validation, and at the end (`finished`, `stopped` by a signal, or `failed`).

    Args:
        run_dir: the run's folder.
    """

    def __init__(self, run_dir: str | Path) -> None:
        self.run_dir = Path(run_dir)
        self.status: dict[str, Any] = {}

    def _update(self, trainer: L.Trainer, **values: Any) -> None:
        if not trainer.is_global_zero:
            return
        self.status.update(values, step=trainer.global_step, updated=time.time())
        write_status(self.run_dir, self.status)

    def on_fit_start(self, trainer: L.Trainer, pl_module) -> None:
        previous = read_status(self.run_dir) or {}
        url = next(
            (lg.experiment.url for lg in trainer.loggers if isinstance(lg, WandbLogger)),
            None,
        )
        self.status = {
            "validation": previous.get("validation", {}),
            "wandb_url": url,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job": os.environ.get("SLURM_JOB_ID"),
        }
        self._update(trainer, state="running")

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict) -> None:
        self._update(trainer, checkpoint_step=trainer.global_step, **self._held_out(trainer))

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        metrics = {
            key: float(value)
            for key, value in trainer.callback_metrics.items()
            if key.startswith("valid/")
        }
        if metrics:
            self._update(trainer, validation=metrics, validation_step=trainer.global_step)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        stopper = next((c for c in trainer.callbacks if isinstance(c, StopOnSignal)), None)
        if stopper is not None and stopper.received:
            self._update(trainer, state="stopped", signal=stopper.received)
        else:
            self._update(trainer, state="finished", **self._held_out(trainer))

    @staticmethod
    def _held_out(trainer: L.Trainer) -> dict[str, Any]:
        """The latest held-out validation (`HeldOutValidation`), when one ran."""
        validation = next((c for c in trainer.callbacks if isinstance(c, HeldOutValidation)), None)
        return (
            {"held_out": validation.latest} if validation is not None and validation.latest else {}
        )

    def on_exception(self, trainer: L.Trainer, pl_module, exception: BaseException) -> None:
        self._update(trainer, state="failed", error=f"{type(exception).__name__}: {exception}")
