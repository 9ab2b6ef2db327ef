"""One Euclidean codebook trained by k-means initialisation and EMA updates (paper §3.2).

Buffer names (`inited`, `cluster_size`, `embed`, `embed_avg`) match the official checkpoints.
Two defects of the official implementation are fixed here:

- a dead code is replaced AFTER the EMA update and its EMA statistics are reset to the new
  vector, so it survives into the next step (officially the update overwrote it at once);
- statistics are summed over distributed ranks before the update and k-means runs on the
  samples of all ranks, so every rank holds the same codebook without a per-step broadcast.

Random draws (k-means starting rows, replacement vectors) come from a generator the caller
passes (None: torch's default generator), so a training module can own and checkpoint it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from encodec_train.model.distributed import (
    all_gather_rows,
    all_reduce_sum_,
    broadcast_,
    is_main_rank,
)


def nearest_code(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """Index of the nearest codebook row for each row of `x` ([n, dim], [codes, dim] → [n]).

    The distance is written as the official code writes it, so ties break identically.
    """
    dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed.t() + embed.pow(2).sum(1)[None])
    return dist.max(dim=-1).indices


def sample_rows(
    samples: torch.Tensor, num: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """`num` random rows of `samples` ([n, dim]), without replacement when there are enough.

    The indices are drawn on the CPU from `generator` (a CPU generator; None: torch's default
    one), then moved to the samples' device.
    """
    n = samples.shape[0]
    if n >= num:
        index = torch.randperm(n, generator=generator)[:num]
    else:
        index = torch.randint(0, n, (num,), generator=generator)
    return samples[index.to(samples.device)]


def kmeans(
    samples: torch.Tensor,
    num_clusters: int,
    num_iters: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lloyd's k-means from random samples (drawn from `generator`, see `sample_rows`);
    returns (centroids [k, dim], cluster sizes [k]).

    A cluster that ends up empty keeps its previous centroid.
    """
    means = sample_rows(samples, num_clusters, generator)
    bins = torch.zeros(num_clusters, device=samples.device)
    for _ in range(num_iters):
        buckets = nearest_code(samples, means)
        bins = torch.bincount(buckets, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, buckets, samples)
        empty = bins == 0
        means = torch.where(empty[:, None], means, sums / bins.clamp(min=1)[:, None])
    return means, bins


def derived_generator(generator: torch.Generator | None) -> torch.Generator:
    """A CPU generator seeded with one draw from `generator` (None: torch's default).

    The codebook calls this on every rank before rank 0 alone samples rows and broadcasts
    them: each rank takes exactly one draw whatever its batch size, so a generator in the same
    state on all ranks (a training module's, checkpointed) stays in the same state.
    """
    seed = int(torch.randint(2**62, (), generator=generator))
    return torch.Generator().manual_seed(seed)


class CodebookUpdate(NamedTuple):
    """What one training step did to a codebook.

    Attributes:
        counts: code counts of the batch, summed over ranks, [codebook_size].
        replaced: number of dead codes replaced, a float scalar on the codebook's device.
    """

    counts: torch.Tensor
    replaced: torch.Tensor


class EuclideanCodebook(nn.Module):
    """Codebook of `codebook_size` vectors of size `dim`, learnt without gradients.

    Args:
        dim: vector size.
        codebook_size: number of codes.
        kmeans_init: start from k-means on the first training batch (else random vectors).
        kmeans_iters: k-means iterations.
        decay: EMA decay of the cluster sizes and sums.
        epsilon: Laplace smoothing of the cluster sizes.
        dead_code_threshold: codes whose EMA cluster size falls below it are replaced by
            random vectors of the current batch (0 disables replacement).
    """

    def __init__(
        self,
        dim: int,
        codebook_size: int,
        kmeans_init: bool = True,
        kmeans_iters: int = 50,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_threshold: float = 2.0,
    ) -> None:
        super().__init__()
        self.codebook_size = codebook_size
        self.kmeans_iters = kmeans_iters
        self.decay = decay
        self.epsilon = epsilon
        self.dead_code_threshold = dead_code_threshold
        embed = torch.zeros(codebook_size, dim)
        if not kmeans_init:
            nn.init.kaiming_uniform_(embed)
        self.register_buffer("inited", torch.tensor([float(not kmeans_init)]))
        self.register_buffer("cluster_size", torch.zeros(codebook_size))
        self.register_buffer("embed", embed)
        self.register_buffer("embed_avg", embed.clone())
        self._seen_initialized = False

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """[..., dim] → codes [...]"""
        return nearest_code(x.reshape(-1, x.shape[-1]), self.embed).view(x.shape[:-1])

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [...] → vectors [..., dim]"""
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def update(
        self, x: torch.Tensor, codes: torch.Tensor, generator: torch.Generator | None = None
    ) -> CodebookUpdate:
        """One training step of the codebook on vectors `x` [n, dim] assigned to `codes` [n]:
        EMA update, then replacement of the dead codes by rows of `x` drawn from `generator`
        (one draw from it on every rank when a code is dead, see `derived_generator`).
        """
        return update_codebooks([self], [x], [codes], generator)[0]

    def statistics(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """This rank's code counts and sums of `x` per code, as one `[codebook_size, 1 + dim]`
        tensor (so the statistics of many codebooks sum over ranks in one collective)."""
        counts = torch.bincount(codes, minlength=self.codebook_size).to(x.dtype)
        sums = torch.zeros_like(self.embed).index_add_(0, codes, x)
        return torch.cat([counts[:, None], sums], dim=1)

    def apply_statistics(self, statistics: torch.Tensor) -> torch.Tensor:
        """EMA update from `statistics` summed over ranks; returns the code counts. The dead
        codes are replaced afterwards (`replace_dead_codes`)."""
        counts, sums = statistics[:, 0], statistics[:, 1:]
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (
            (self.cluster_size + self.epsilon) / (total + self.codebook_size * self.epsilon) * total
        )
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        return counts

    def is_initialized(self) -> bool:
        """Whether the codebook holds trained codes (`inited`). Reading the buffer waits for
        the device, so once seen set it is remembered on the host (until a state dict is
        loaded): a training step reads no buffer."""
        if not self._seen_initialized:
            self._seen_initialized = bool(self.inited)
        return self._seen_initialized

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._seen_initialized = False
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def initialize(self, x: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """k-means on the samples of every rank, computed on rank 0 and broadcast; its
        starting rows come from `derived_generator(generator)`."""
        samples = all_gather_rows(x)
        rows = derived_generator(generator)
        if is_main_rank():
            embed, sizes = kmeans(samples, self.codebook_size, self.kmeans_iters, rows)
            self.embed.copy_(embed)
            self.cluster_size.copy_(sizes)
        broadcast_(self.embed, self.cluster_size)
        self.embed_avg.copy_(self.embed * self.cluster_size[:, None])
        self.inited.fill_(1.0)
        self._seen_initialized = True

    def dead_codes(self) -> torch.Tensor | None:
        """Mask of the codes whose EMA count fell below the threshold (None: replacement is
        off). `cluster_size` is identical on every rank, so all ranks agree on it."""
        if self.dead_code_threshold <= 0:
            return None
        return self.cluster_size < self.dead_code_threshold

    def replace_dead_codes(
        self, x: torch.Tensor, dead: torch.Tensor, generator: torch.Generator | None
    ) -> None:
        """Replace the `dead` codes (at least one) by rows of `x` drawn from
        `derived_generator(generator)` and reset their statistics."""
        rows = derived_generator(generator)
        if is_main_rank():
            fresh = sample_rows(x, self.codebook_size, rows)
            self.embed.copy_(torch.where(dead[:, None], fresh, self.embed))
        broadcast_(self.embed)
        # Reset the statistics so the next EMA step keeps the new vector instead of erasing it.
        self.cluster_size.masked_fill_(dead, self.dead_code_threshold)
        self.embed_avg.copy_(
            torch.where(dead[:, None], self.embed * self.dead_code_threshold, self.embed_avg)
        )


@torch.no_grad()
def update_codebooks(
    codebooks: Sequence[EuclideanCodebook],
    samples: Sequence[torch.Tensor],
    codes: Sequence[torch.Tensor],
    generator: torch.Generator | None = None,
) -> list[CodebookUpdate]:
    """`EuclideanCodebook.update` of several codebooks, in order, with all their statistics
    summed over ranks in ONE collective (a residual VQ's levels: one all-reduce per step
    instead of two per level) and one host-device sync for all their dead-code checks. The
    same results, and the same random draws in the same order, as updating them one by one."""
    statistics = [
        codebook.statistics(x, level_codes)
        for codebook, x, level_codes in zip(codebooks, samples, codes, strict=True)
    ]
    stacked = torch.stack(statistics) if len(statistics) > 1 else statistics[0][None]
    all_reduce_sum_(stacked)
    counts = [
        codebook.apply_statistics(level) for codebook, level in zip(codebooks, stacked, strict=True)
    ]
    dead = [codebook.dead_codes() for codebook in codebooks]
    masks = [mask for mask in dead if mask is not None]
    # Which levels have a dead code decides the random draws (host side): one host-device
    # sync for all levels, whose replacements then run in level order as one by one.
    any_dead = iter(torch.stack([mask.any() for mask in masks]).tolist() if masks else [])
    updates = []
    for codebook, level_counts, mask, x in zip(codebooks, counts, dead, samples, strict=True):
        if mask is None:
            updates.append(CodebookUpdate(level_counts, x.new_zeros(())))
            continue
        replaced = mask.sum().to(x.dtype)
        if next(any_dead):
            codebook.replace_dead_codes(x, mask, generator)
        updates.append(CodebookUpdate(level_counts, replaced))
    return updates
