"""`python -m encodec_train [+recipe=24khz] [overrides]`: train an EnCodec codec.

With no arguments it trains the tiny demo codec on a synthesised corpus on the CPU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import hydra
import lightning as L
from omegaconf import DictConfig

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


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    module, trainer, datamodule = fit(cfg)
    results = trainer.validate(module, datamodule=datamodule, verbose=False)
    if trainer.is_global_zero:
        print(summarize(module, trainer, results[0] if results else {}))


if __name__ == "__main__":
    main()
