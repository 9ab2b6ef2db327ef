"""torch.distributed helpers that are no-ops outside a process group."""

from __future__ import annotations

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def is_main_rank() -> bool:
    return not is_distributed() or dist.get_rank() == 0


def all_reduce_sum_(*tensors: torch.Tensor) -> None:
    """Sum each tensor over ranks, in place."""
    if is_distributed():
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def all_reduce_mean_(*tensors: torch.Tensor) -> None:
    """Average each tensor over ranks, in place."""
    if is_distributed():
        world = dist.get_world_size()
        for tensor in tensors:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
            tensor.div_(world)


def broadcast_(*tensors: torch.Tensor, src: int = 0) -> None:
    """Copy each tensor from rank `src` to every rank, in place."""
    if is_distributed():
        for tensor in tensors:
            dist.broadcast(tensor, src=src)


def all_gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Concatenate `[rows, dim]` tensors of equal shape from every rank along rows."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


def all_gather_uneven(x: torch.Tensor) -> torch.Tensor:
    """Concatenate 1-D tensors of any length from every rank, in rank order."""
    if not is_distributed():
        return x
    world = dist.get_world_size()
    length = torch.tensor([x.numel()], device=x.device)
    lengths = [torch.empty_like(length) for _ in range(world)]
    dist.all_gather(lengths, length)
    longest = int(max(lengths).item())
    padded = torch.cat([x, x.new_zeros(longest - x.numel())])
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(n.item())] for part, n in zip(parts, lengths, strict=True)])
