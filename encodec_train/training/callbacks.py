"""Callbacks: decoded audio examples at every bandwidth."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import soundfile as sf
import torch
from lightning.pytorch.loggers import WandbLogger


class AudioExamples(L.Callback):
    """Every `every_n_steps` updates, decode the first validation batch at each bandwidth and
    write `<output_dir>/step_<k>/<bandwidth>kbps.wav` (plus the reference); W&B gets them too.

    Uses the module's evaluation generator (EMA weights when kept) in eval mode, so the
    codebooks do not learn from the examples.
    """

    def __init__(self, every_n_steps: int, output_dir: str | Path, max_items: int = 2) -> None:
        self.every_n_steps = every_n_steps
        self.output_dir = Path(output_dir)
        self.max_items = max_items
        self._reference: torch.Tensor | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps or not trainer.is_global_zero:
            return
        if self._reference is None:
            self._reference = self._first_validation_audio(trainer, batch)
        self.write(pl_module, step)

    def _first_validation_audio(self, trainer: L.Trainer, batch) -> torch.Tensor:
        datamodule = trainer.datamodule
        if datamodule is not None and datamodule.val_dataloader() is not None:
            batch = next(iter(datamodule.val_dataloader()))
        return batch["audio"][: self.max_items].detach().cpu()

    @torch.no_grad()
    def write(self, pl_module, step: int) -> dict[str, Path]:
        generator = pl_module.evaluation_generator()
        was_training = generator.training
        generator.eval()
        reference = self._reference.to(pl_module.device)
        decoded = {"reference": reference}
        for bandwidth in generator.target_bandwidths:
            decoded[f"{bandwidth:g}kbps"] = generator(reference, bandwidth).audio
        generator.train(was_training)
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
        trainer.save_checkpoint(self.path)
