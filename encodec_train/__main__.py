"""`python -m encodec_train [+recipe=24khz] [overrides]`: train an EnCodec codec.

With no arguments it trains the tiny demo codec on a synthesised corpus on the CPU.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from encodec_train.training.builder import fit
from encodec_train.training.callbacks import StopOnSignal, TrainingHealth
from encodec_train.training.dry_run import plan
from encodec_train.training.run_record import remove_if_empty
from encodec_train.training.slurm import requeue_job

log = logging.getLogger("encodec_train")


def summarize(
    module, trainer: L.Trainer, validation: dict[str, float], health: TrainingHealth | None
) -> str:
    """What this process did (steps, from where), validation per bandwidth, the last
    training-health probe with any sign of collapse, and where the checkpoint is."""
    lines = ["", "=== encodec-train summary ==="]
    end = trainer.global_step
    if module.start_step is None or module.start_step == end:
        lines.append(
            f"no training step ran: the run was already at step {end}, where trainer.max_steps "
            "or trainer.max_epochs ends it; raise them to continue, or pass resume=null or "
            "another run_name to start afresh"
        )
    else:
        origin = f"resumed at step {module.start_step}" if module.start_step else "from scratch"
        lines.append(f"trained steps {module.start_step} -> {end} ({origin})")
    for key, value in sorted(validation.items()):
        lines.append(f"{key}: {value:.4f}")
    if health is not None and health.reports:
        report = health.reports[-1]
        lines.append(
            f"training health at step {report.step}: level-0 perplexity "
            f"{report.level0_perplexity:.1f}, encoder temporal variation "
            f"{report.encoder_temporal_variation:.2f}, own/other distance ratio "
            f"{report.own_other_ratio:.2f}, discriminator accuracy "
            f"{report.discriminator_accuracy:.2f}"
        )
        lines += [f"WARNING (training health): {problem}" for problem in health.problems]
        if not health.problems:
            lines.append("training health: no sign of collapse")
    checkpoint = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
    lines.append(f"checkpoint: {checkpoint}")
    # The entropy model's module names its own loader.
    loader = getattr(module, "checkpoint_loader", "EncodecModel.from_checkpoint")
    lines.append(f"load it with: {loader}('{checkpoint}')")
    return "\n".join(lines)


def sweep_point_run_dir(cfg: DictConfig) -> None:
    """In a multirun, each sweep point trains in Hydra's folder for it,
    `${run_dir}/<its overrides>` (deterministic, so a requeued point finds its checkpoints),
    and its W&B run is named after that folder, in the group `run_name` of the sweep."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        point = Path(hydra_cfg.runtime.output_dir)
        OmegaConf.update(cfg, "run_dir", str(point))
        if "group" in cfg.logger:
            OmegaConf.update(cfg, "logger.group", cfg.run_name)
            OmegaConf.update(cfg, "logger.name", f"{cfg.run_name}/{point.name}")


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sweep_point_run_dir(cfg)
    if cfg.dry_run:
        try:
            text, problems = plan(cfg)
        finally:
            remove_if_empty(cfg.run_dir)
        print(text)
        if problems:
            sys.exit(1)
        return
    try:
        module, trainer, datamodule = fit(cfg)
    except BaseException:
        remove_if_empty(cfg.run_dir)  # a start that failed its checks leaves nothing behind
        raise
    stopper = next(c for c in trainer.callbacks if isinstance(c, StopOnSignal))
    if stopper.received:
        if trainer.is_global_zero:
            job = requeue_job() if stopper.requeue else None
            print(
                f"\nstopped by {stopper.received} after step {trainer.global_step}; "
                f"{Path(cfg.run_dir) / 'checkpoints' / 'last.ckpt'} holds it: "
                + (
                    f"SLURM job {job} is requeued and continues from there"
                    if job
                    else "run the same command again to continue exactly from there"
                )
            )
        return
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        health = next((c for c in trainer.callbacks if isinstance(c, TrainingHealth)), None)
        print(summarize(module, trainer, results[0] if results else {}, health))


if __name__ == "__main__":
    main()
