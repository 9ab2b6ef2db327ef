"""Run by `test_ddp.py` as a script: a short demo training on 2 CPU processes (gloo); each
rank saves its networks to `<out>/rank<r>.pt`; further arguments are config overrides.
Lightning relaunches this script per rank."""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from run_helpers import demo_config  # noqa: E402

from encodec_train.training.builder import fit  # noqa: E402


def main(out: Path, overrides: list[str]) -> None:
    torch.set_num_threads(1)
    cfg = demo_config(
        out,
        "trainer=ddp_cpu",
        "trainer.max_steps=3",
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=0",
        # The paper's recipes: one discriminator per bandwidth; ranks must agree on it too.
        "training.discriminator_per_bandwidth=true",
        *overrides,
    )
    module, trainer, _ = fit(cfg)
    torch.save(
        {
            "generator": module.generator.state_dict(),
            "discriminator": module.adversarial.discriminator.state_dict(),
            "balancer": module.balancer.state_dict(),
            "steps": trainer.global_step,
        },
        out / f"rank{trainer.global_rank}.pt",
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
