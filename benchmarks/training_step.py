"""Seconds per training step of the paper's 24 kHz model, and where they go.

Times one full GAN step of `CodecGANModule` (batch × 1 s, discriminator updated every step)
split into: generator forward, reconstruction + adversarial losses, balancer (gradients
w.r.t. the output), discriminator update, generator backward + Adam. Prints the median of
`--repeats` steps after `--warmup` steps. Usage:

    python benchmarks/training_step.py [--recipe 24khz] [--batch 4] [--repeats 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import torch
from hydra import compose, initialize_config_dir

from encodec_train import CONFIG_DIR
from encodec_train.training.builder import build_module

CONF_DIR = CONFIG_DIR


def one_step(module, opt_g, opt_d, real: torch.Tensor, timings: dict[str, list[float]]) -> None:
    """`CodecGANModule.training_step` without Lightning, cut into timed phases."""
    marks = [("start", time.perf_counter())]

    def mark(name: str) -> None:
        marks.append((name, time.perf_counter()))

    setting, _ = module.draw_step_plan()
    output = module.generator(real, **setting)
    fake = output.audio
    mark("generator forward")
    d_loss = module.adversarial.discriminator_loss(fake, real)
    opt_d.zero_grad(set_to_none=True)
    d_loss.backward()
    opt_d.step()
    mark("discriminator update")
    losses = module.generator_losses(fake, real)
    mark("losses")
    balanced = module.balancer.combine(losses, fake)
    mark("balancer")
    opt_g.zero_grad(set_to_none=True)
    (balanced + output.commitment_loss).backward()
    opt_g.step()
    mark("generator backward + step")
    for (_, before), (name, after) in zip(marks, marks[1:], strict=False):
        timings[name].append(after - before)
    timings["total"].append(marks[-1][1] - marks[0][1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="24khz")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"+recipe={args.recipe}"])
    module = build_module(cfg).train()
    opt_g, opt_d = module.configure_optimizers()
    model = module.generator
    generator = torch.Generator().manual_seed(0)
    real = 0.1 * torch.randn(args.batch, model.channels, model.sample_rate, generator=generator)
    timings: dict[str, list[float]] = defaultdict(list)
    for step in range(args.warmup + args.repeats):
        if step == args.warmup:
            timings.clear()
        one_step(module, opt_g, opt_d, real, timings)
    total = statistics.median(timings["total"])
    print(
        f"recipe {args.recipe}: batch {args.batch} x 1 s, {args.threads} threads, "
        f"median of {args.repeats} steps after {args.warmup} warm-up"
    )
    print(f"{'phase':28s} {'seconds':>9s} {'share':>7s}")
    for name, values in timings.items():
        seconds = statistics.median(values)
        print(f"{name:28s} {seconds:9.3f} {seconds / total:7.1%}")


if __name__ == "__main__":
    main()
