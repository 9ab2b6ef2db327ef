"""The W&B logger of a run: Lightning's `WandbLogger`, plus the run's record in its config and
every checkpoint logged as a version of the model artifact as soon as it is written."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only


class WandbRunLogger(WandbLogger):
    """`WandbLogger` that logs each checkpoint the run writes as a version of the artifact
    `model-<run id>` (alias `best` for the best-validation checkpoint; W&B moves `latest` to
    the newest version), so a preempted job leaves its checkpoints behind in W&B; offline
    runs keep them for `wandb sync`. `resume=wandb:...` (training/resume.py) reads them back.

    Args:
        log_checkpoints: log checkpoints as artifacts (False: local checkpoints only).
        **kwargs: `WandbLogger`'s arguments (its own `log_model` stays off: this replaces it).
    """

    def __init__(self, *, log_checkpoints: bool = True, **kwargs) -> None:
        super().__init__(log_model=False, **kwargs)
        self.log_checkpoints = log_checkpoints
        self.run_record: dict | None = None

    @rank_zero_only
    def record_run(self, record: dict) -> None:
        """Put the start's record (resolved config, overrides, code version) into the W&B
        run's config, and keep it as every checkpoint artifact's metadata."""
        self.run_record = record
        self.experiment.config.update(record, allow_val_change=True)

    def after_save_checkpoint(self, checkpoint_callback: ModelCheckpoint) -> None:
        if checkpoint_callback.monitor:
            self.log_checkpoint(checkpoint_callback.best_model_path, best=True)
        else:
            self.log_checkpoint(checkpoint_callback.last_model_path)

    @rank_zero_only
    def log_checkpoint(self, path: str | Path, best: bool = False) -> None:
        """Log the checkpoint at `path` (copied as it is now: `last.ckpt` is rewritten later)."""
        if not self.log_checkpoints or not path or not Path(path).exists():
            return
        import wandb

        metadata = {"file": Path(path).name}
        if self.run_record is not None:
            metadata["config"] = self.run_record["config"]
        artifact = wandb.Artifact(f"model-{self.experiment.id}", type="model", metadata=metadata)
        artifact.add_file(str(path), name=Path(path).name, policy="mutable")
        self.experiment.log_artifact(artifact, aliases=["best"] if best else [])


class WandbUnreachableError(ConnectionError):
    """`logger=wandb` in online mode on a machine that cannot reach the W&B server."""


def check_reachable(timeout: float = 5.0) -> None:
    """In online mode, fail before any training when the W&B server (`WANDB_BASE_URL`, else
    api.wandb.ai) cannot be reached, instead of W&B's own retries minutes into the run."""
    if os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun"):
        return
    url = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai"))
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        socket.create_connection((url.hostname, port), timeout=timeout).close()
    except OSError as error:
        raise WandbUnreachableError(
            f"logger=wandb: cannot reach {url.hostname}:{port} ({error}); without a network "
            "run with WANDB_MODE=offline (and `wandb sync runs/<name>/wandb/offline-run-*` "
            "later), or choose logger=csv"
        ) from None
