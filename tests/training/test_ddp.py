"""DDP on the CPU: two gloo processes train and end with identical networks and codebooks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

# The generator judged by the discriminator before its update: the update's backward
# reaches the discriminator alone, and the generator's after it, under DDP's reducer too.
JUDGE_BEFORE_UPDATE = [
    "training.adversary_start_step=0",
    "training.discriminator_update_prob=1",
    "module.speed.judge_before_update=true",
]


@pytest.mark.slow  # two gloo processes training the demo: ~12 s each (make test-all, CI)
@pytest.mark.parametrize("overrides", [[], JUDGE_BEFORE_UPDATE], ids=["default", "judge_early"])
def test_two_ranks_end_with_identical_networks_and_codebooks(tmp_path, overrides):
    worker = Path(__file__).with_name("ddp_worker.py")
    result = subprocess.run(
        [sys.executable, str(worker), str(tmp_path), *overrides],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["steps"] == ranks[1]["steps"] == 3
    for part in ("generator", "discriminator", "balancer"):
        zero, one = ranks[0][part], ranks[1][part]
        assert zero.keys() == one.keys()
        for name in zero:
            torch.testing.assert_close(one[name], zero[name], rtol=0, atol=0, msg=f"{part}.{name}")
    # The codebooks were really trained (k-means ran and the EMA moved them).
    assert bool(ranks[0]["generator"]["quantizer.vq.layers.0._codebook.inited"])
    assert ranks[0]["generator"]["quantizer.vq.layers.0._codebook.cluster_size"].sum() > 0
