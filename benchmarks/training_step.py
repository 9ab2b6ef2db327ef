"""Seconds per training step of a recipe, timed on the real `CodecGANModule.training_step`.

Runs Lightning's loop on random audio and times each batch from `on_train_batch_start` to
`on_train_batch_end` (median over `--repeats` steps after `--warmup`). Three runs split the
step: reconstruction only (no adversarial losses, no discriminator update), + the
adversarial and feature-matching losses, + the discriminator update on every step (the full
GAN step). Usage:

    python benchmarks/training_step.py [--recipe 24khz] [--batch 4] [--seconds 1] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time

import lightning as L
import torch
from hydra import compose, initialize_config_dir
from torch.utils.data import DataLoader, Dataset

from encodec_train import CONFIG_DIR
from encodec_train.training.builder import build_module
from encodec_train.training.quiet import silence_unactionable_messages

VARIANTS = {
    "reconstruction only": [
        "training.adversary_start_step=1000000",
        "training.discriminator_update_prob=0",
    ],
    "+ adversarial losses": [
        "training.adversary_start_step=0",
        "training.discriminator_update_prob=0",
    ],
    "+ discriminator update (full step)": [
        "training.adversary_start_step=0",
        "training.discriminator_update_prob=1",
    ],
}


class RandomAudio(Dataset):
    """`length` fixed batches' worth of seeded noise at -20 dBFS, with an all-ones mask."""

    def __init__(self, channels: int, samples: int, length: int) -> None:
        generator = torch.Generator().manual_seed(0)
        self.audio = 0.1 * torch.randn(length, channels, samples, generator=generator)

    def __len__(self) -> int:
        return len(self.audio)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"audio": self.audio[index], "mask": torch.ones_like(self.audio[index])}


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.seconds: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def time_steps(recipe: str, overrides: list[str], args: argparse.Namespace) -> list[float]:
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose(
            "config", overrides=[*([f"+recipe={recipe}"] if recipe != "demo" else []), *overrides]
        )
    module = build_module(cfg)
    steps = args.warmup + args.repeats
    samples = int(args.seconds * module.generator.sample_rate)
    data = RandomAudio(module.generator.channels, samples, steps * args.batch)
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=DataLoader(data, batch_size=args.batch))
    return timer.seconds[args.warmup :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="24khz", help="24khz, 48khz or demo")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    silence_unactionable_messages()
    medians = {
        name: statistics.median(time_steps(args.recipe, overrides, args))
        for name, overrides in VARIANTS.items()
    }
    full = medians["+ discriminator update (full step)"]
    print(
        f"recipe {args.recipe}: batch {args.batch} x {args.seconds:g} s, {args.threads} threads, "
        f"median of {args.repeats} real training steps after {args.warmup} warm-up"
    )
    print(f"{'step':38s} {'s/step':>8s} {'of full':>8s}")
    for name, seconds in medians.items():
        print(f"{name:38s} {seconds:8.3f} {seconds / full:8.1%}")


if __name__ == "__main__":
    main()
