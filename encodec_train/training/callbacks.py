"""Callbacks: decoded audio examples at every bandwidth, and training-health probes."""

from __future__ import annotations

import logging
import signal
from pathlib import Path

import lightning as L
import soundfile as sf
import torch
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger

from encodec_train.evaluation.metrics import MelDistance
from encodec_train.training.health import (
    HealthCheck,
    HealthReport,
    PersistentProblems,
    eval_mode,
    probe_health,
)
from encodec_train.training.wandb_run import WandbRunLogger

log = logging.getLogger(__name__)


def probe_audio(trainer: L.Trainer, batch: dict[str, torch.Tensor], max_items: int) -> torch.Tensor:
    """Clips to follow all run long: the first `max_items` of the validation set when the run
    has validation data, else of `batch` (the current training batch). On the CPU, detached."""
    datamodule = trainer.datamodule
    loader = datamodule.val_dataloader() if datamodule is not None else None
    clips = []
    for validation_batch in [] if loader is None else loader:
        clips += list(validation_batch["audio"])
        if len(clips) >= max_items:
            break
    chosen = torch.stack(clips) if clips else batch["audio"]
    return chosen[:max_items].detach().cpu()


class PeriodicProbe(L.Callback):
    """Base of the callbacks that look at the codec every `every_n_steps` updates (on the main
    rank only) on the same `max_items` clips all run long (`probe_audio`)."""

    def __init__(self, every_n_steps: int, max_items: int) -> None:
        self.every_n_steps = every_n_steps
        self.max_items = max_items
        self._reference: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        if self._reference is None:
            self._reference = probe_audio(trainer, batch, self.max_items)
        self.probe(trainer, pl_module, step)

    def probe(self, trainer: L.Trainer, pl_module, step: int) -> None:
        raise NotImplementedError


class AudioExamples(PeriodicProbe):
    """Every `every_n_steps` updates, decode the probe clips at each bandwidth and write
    `<output_dir>/step_<k>/<bandwidth>kbps_<i>.wav` (plus the reference); W&B gets them too.

    Uses the module's evaluation generator (EMA weights when kept) in eval mode, so the
    codebooks do not learn from the examples.
    """

    def __init__(self, every_n_steps: int, output_dir: str | Path, max_items: int = 2) -> None:
        super().__init__(every_n_steps, max_items)
        self.output_dir = Path(output_dir)

    def probe(self, trainer: L.Trainer, pl_module, step: int) -> None:
        self.write(pl_module, step)

    @torch.no_grad()
    def write(self, pl_module, step: int) -> dict[str, Path]:
        generator = pl_module.evaluation_generator()
        reference = self._reference.to(pl_module.device)
        decoded = {"reference": reference}
        with eval_mode(generator):
            for bandwidth in generator.target_bandwidths:
                decoded[f"{bandwidth:g}kbps"] = generator(reference, bandwidth).audio
        folder = self.output_dir / f"step_{step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, audio in decoded.items():
            for item, clip in enumerate(audio.float().cpu()):
                path = folder / f"{name}_{item}.wav"
                sf.write(path, clip.clamp(-1, 1).T.numpy(), generator.sample_rate)
                paths[f"{name}_{item}"] = path
        logger = pl_module.logger
        if isinstance(logger, WandbLogger):
            logger.log_audio(
                key="examples",
                audios=[str(p) for p in paths.values()],
                caption=list(paths),
                sample_rate=[generator.sample_rate] * len(paths),
                step=step,
            )
        return paths


class SaveLastOnTrainEnd(L.Callback):
    """Write `last.ckpt` when training ends, whatever step the periodic saves stopped at."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_train_end(self, trainer: L.Trainer, pl_module) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # everything a resume needs
        for logger in trainer.loggers:  # also to W&B: a preempted job leaves it behind there
            if isinstance(logger, WandbRunLogger):
                logger.log_checkpoint(self.path)


class StopOnSignal(L.Callback):
    """On a signal, finish the current step, then stop training: `SaveLastOnTrainEnd` writes
    `last.ckpt`, and the same command resumes exactly from it.

    SIGTERM (a scheduler's kill, a preemption) and SIGINT (Ctrl-C) stop; SIGUSR1 and SIGUSR2
    (what SLURM sends before the time limit: `--signal=USR1@300` in slurm/, USR2 from the
    submitit launcher) stop and set `requeue`, so the entry point requeues the job
    (training/slurm.py), the only requeue mechanism of a run. `received` names the signal
    afterwards (None: none came). The decisions are reduced over ranks, so all of them stop
    after the same step and agree on the requeue.
    """

    STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
    REQUEUE_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self) -> None:
        self.received: str | None = None
        self.requeue = False
        self._previous: dict[int, object] = {}
        self._trainer: L.Trainer | None = None

    def _handle(self, signum: int, frame) -> None:
        self.received = signal.Signals(signum).name
        log.warning("%s received: stopping after this step and writing last.ckpt", self.received)
        # Lightning's own SIGTERM handler runs first and calls this one. Its flag would end the
        # run by a SystemExit(0) at the next batch (of the sanity check too), with no last.ckpt
        # and no message; this callback stops the run instead, so the flag is cleared.
        if self._trainer is not None:
            self._trainer._signal_connector.received_sigterm = False

    def setup(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        # Before Lightning's own SIGTERM handler, which calls this one as well.
        if stage == "fit":
            self._trainer = trainer
            self.received, self.requeue = None, False
            self._previous = {
                sig: signal.signal(sig, self._handle)
                for sig in self.STOP_SIGNALS + self.REQUEUE_SIGNALS
            }

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            requeue_names = {sig.name for sig in self.REQUEUE_SIGNALS}
            self.requeue = trainer.strategy.reduce_boolean_decision(
                self.received in requeue_names, all=False
            )
            self.received = self.received or "a signal to another rank"
            trainer.should_stop = True

    def teardown(self, trainer: L.Trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}
        self._trainer = None


class TrainingHealth(PeriodicProbe):
    """Every `every_n_steps` updates, probe the codec on a fixed batch (`probe_health`), log
    the signals under `health/`, and warn loudly when `check` finds a collapse on `patience`
    consecutive probes: a log line, a W&B alert when W&B logs the run, and `problems` for the
    run summary.

    Args:
        every_n_steps: probe interval in generator updates (0: never).
        check: the thresholds.
        max_items: clips in the probe batch (at least 2, to compare own vs. other clips).
        patience: consecutive probes that must find a problem before it is reported.
    """

    def __init__(
        self, every_n_steps: int, check: HealthCheck, max_items: int = 4, patience: int = 2
    ) -> None:
        if max_items < 2:
            raise ValueError(f"max_items={max_items}: the probe compares at least two clips")
        super().__init__(every_n_steps, max_items)
        self.check = check
        self.persistent = PersistentProblems(patience)
        self.reports: list[HealthReport] = []
        self.problems: list[str] = []
        self._distance: MelDistance | None = None

    def probe(self, trainer: L.Trainer, pl_module, step: int) -> None:
        if self._distance is None:
            self._distance = MelDistance(pl_module.generator.sample_rate)
        report = probe_health(
            pl_module.evaluation_generator(),
            pl_module.adversarial.judge(-1),  # judges the highest bandwidth, as the probe
            self._reference.to(pl_module.device),
            step,
            self._distance,
        )
        self.reports.append(report)
        for logger in trainer.loggers:
            logger.log_metrics(report.as_metrics(), step=step)
        found = self.check.problems(report, pl_module.adversary_start_step)
        self.problems = self.persistent.update(found)
        for problem in self.problems:
            log.warning("TRAINING HEALTH at step %d: %s", step, problem)
        if self.problems and isinstance(pl_module.logger, WandbLogger):
            pl_module.logger.experiment.alert(
                title="encodec-train: training health",
                text=f"step {step}: " + "; ".join(self.problems),
            )

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {"streaks": dict(self.persistent.streaks)}

    def load_state_dict(self, state_dict: dict[str, dict[str, int]]) -> None:
        self.persistent.streaks = dict(state_dict["streaks"])


class TrainingProgressBar(TQDMProgressBar):
    """Lightning's bar with the steps this run will really make (an epoch that `max_steps`
    ends early is not shown at its nominal length) and the latest logged losses in place of
    Lightning's `v_num`."""

    SHOWN = {"train/loss_mel": "mel", "train/discriminator_loss": "D", "train/loss_time": "time"}

    @property
    def total_train_batches(self) -> int | float:
        total = super().total_train_batches
        trainer = self.trainer
        if trainer.max_steps is None or trainer.max_steps < 0:
            return total
        done_in_epoch = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        return min(total, done_in_epoch + max(0, trainer.max_steps - trainer.global_step))

    def get_metrics(self, trainer: L.Trainer, pl_module) -> dict[str, int | str | float]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        for key, name in self.SHOWN.items():
            if key in pl_module.last_logged:
                items[name] = f"{pl_module.last_logged[key]:.3f}"
        return items
