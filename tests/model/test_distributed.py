"""torch.distributed helpers across two gloo processes."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from encodec_train.model.distributed import all_gather_uneven

# Per rank, per call: lengths 3 and 1, then 0 and 2 (a rank with nothing still takes part).
PARTS = [
    [torch.tensor([1.0, 2.0, 3.0]), torch.zeros(0)],
    [torch.tensor([10.0]), torch.tensor([20.0, 30.0])],
]


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    try:
        gathered = [all_gather_uneven(part.double()) for part in PARTS[rank]]
        torch.save(gathered, Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_all_gather_uneven_concatenates_every_ranks_values_in_rank_order(tmp_path):
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    expected = [
        torch.tensor([1.0, 2.0, 3.0, 10.0], dtype=torch.float64),
        torch.tensor([20.0, 30.0], dtype=torch.float64),
    ]
    for rank in (0, 1):
        gathered = torch.load(tmp_path / f"rank{rank}.pt")
        assert len(gathered) == 2
        for got, want in zip(gathered, expected, strict=True):
            assert torch.equal(got, want)


def test_outside_a_process_group_it_returns_its_input():
    x = torch.tensor([4.0, 5.0])
    assert all_gather_uneven(x) is x
