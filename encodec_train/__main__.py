"""`python -m encodec_train [+recipe=24khz] [overrides]`: train an EnCodec codec.

With no arguments it trains the tiny demo codec on a synthesised corpus on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from encodec_train.training.builder import fit

log = logging.getLogger("encodec_train")


def summarize(module, trainer: L.Trainer, validation: dict[str, float]) -> str:
    """Mel loss at the start and end of training, and where the checkpoint is."""
    lines = ["", "=== encodec-train summary ==="]
    history = [h for h in module.history if "train/loss_mel" in h]
    if history:
        lines.append(
            f"train mel loss: {history[0]['train/loss_mel']:.4f} (first log) -> "
            f"{history[-1]['train/loss_mel']:.4f} (last log), step {trainer.global_step}"
        )
    else:
        lines.append(
            f"no training step ran: the run was already complete at step {trainer.global_step} "
            "(resume=auto continued it); pass resume=null or another run_name to start afresh"
        )
    for key, value in sorted(validation.items()):
        lines.append(f"{key}: {value:.4f}")
    checkpoint = Path(trainer.checkpoint_callback.dirpath) / "last.ckpt"
    lines.append(f"checkpoint: {checkpoint}")
    lines.append(f"load it with: EncodecModel.from_checkpoint('{checkpoint}')")
    return "\n".join(lines)


def sweep_point_run_dir(cfg: DictConfig) -> None:
    """In a multirun, each sweep point trains in Hydra's folder for it,
    `${run_dir}/multirun/<job number>` (deterministic, so a requeued point finds its
    checkpoints; its `.hydra/overrides.yaml` says which point it is)."""
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode == RunMode.MULTIRUN:
        OmegaConf.update(cfg, "run_dir", hydra_cfg.runtime.output_dir)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    sweep_point_run_dir(cfg)
    module, trainer, datamodule = fit(cfg)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        print(summarize(module, trainer, results[0] if results else {}))


if __name__ == "__main__":
    main()
