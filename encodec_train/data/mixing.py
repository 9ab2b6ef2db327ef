"""The paper's data mixing (Sec. 4.1): strategies s1-s4, source pools, gains and the mixture.

Each example of a batch draws a strategy, which names how many sources to mix and which files
may serve as sources (a pool, defined by manifest `domain` / `dataset` filters). Within a pool a
file is drawn with probability proportional to `duration * weight`, so every second of audio is
equally likely (times the file's weight) whatever the file lengths. Each source is normalised to
a fixed RMS (measured over its whole file, or over its segment), given a random gain, and the
sources are summed; a mixture whose peak exceeds the limit is rejected (the dataset draws a new
example) or scaled down as a whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from encodec_train.data.manifest import DOMAINS


@dataclass(frozen=True)
class MixingStrategy:
    """One way of building an example: how many sources, drawn from which files.

    A file is in the strategy's pool when its domain and dataset pass all four filters (`None`
    for an include filter means "any").

    Args:
        name: shown in errors, e.g. "s3".
        probability: chance that an example uses this strategy; the strategies' sum is 1.
        num_sources: distinct files mixed into one example.
        include_domains: domains allowed, or None for all.
        exclude_domains: domains refused.
        include_datasets: manifest `dataset` names allowed, or None for all.
        exclude_datasets: manifest `dataset` names refused.
    """

    name: str
    probability: float
    num_sources: int = 1
    include_domains: Sequence[str] | None = None
    exclude_domains: Sequence[str] = ()
    include_datasets: Sequence[str] | None = None
    exclude_datasets: Sequence[str] = ()

    def selects(self, domain: np.ndarray, dataset: np.ndarray) -> np.ndarray:
        """Boolean mask of the files (given by their domain and dataset columns) in the pool."""
        selected = ~np.isin(domain, list(self.exclude_domains))
        selected &= ~np.isin(dataset, list(self.exclude_datasets))
        if self.include_domains is not None:
            selected &= np.isin(domain, list(self.include_domains))
        if self.include_datasets is not None:
            selected &= np.isin(dataset, list(self.include_datasets))
        return selected


class SourcePool:
    """Files that one strategy draws from, each with probability proportional to its weight.

    Args:
        files: int64 [n] indices of the files in the corpus.
        weights: float64 [n] positive weights (duration x manifest weight).
    """

    def __init__(self, files: np.ndarray, weights: np.ndarray) -> None:
        self.files = files
        # A normalised CDF makes a draw one uniform number and a binary search, whatever n.
        self.cdf = np.cumsum(weights, dtype=np.float64)
        self.cdf /= self.cdf[-1]

    def __len__(self) -> int:
        return len(self.files)

    def draw(self, rng: np.random.Generator, count: int, exclude: Sequence[int] = ()) -> list[int]:
        """`count` distinct files, none of them in `exclude`.

        Redrawing a file already taken is exact sampling without replacement: the accepted draw
        follows the weights renormalised over the files not yet taken.
        """
        chosen: list[int] = []
        while len(chosen) < count:
            slot = min(int(np.searchsorted(self.cdf, rng.random(), side="right")), len(self) - 1)
            file = int(self.files[slot])
            if file not in chosen and file not in exclude:
                chosen.append(file)
        return chosen


class StrategySampler:
    """Draws a strategy and its distinct source files for each example.

    Args:
        strategies: the strategies; those with probability 0 are dropped.
        domain: [n] domain of each corpus file.
        dataset: [n] dataset name of each corpus file.
        weights: float64 [n] sampling weight of each file (duration x manifest weight, zero for
            a file that must never be drawn).

    Raises:
        ValueError: probabilities that do not sum to 1, an unknown domain in a filter, or a
            strategy whose pool holds fewer files than it mixes (the error names it).
    """

    def __init__(
        self,
        strategies: Sequence[MixingStrategy],
        domain: np.ndarray,
        dataset: np.ndarray,
        weights: np.ndarray,
    ) -> None:
        total = sum(s.probability for s in strategies)
        if any(s.probability < 0 for s in strategies) or not np.isclose(total, 1.0):
            raise ValueError(f"strategy probabilities must be >= 0 and sum to 1, got {total}")
        self.strategies = [s for s in strategies if s.probability > 0]
        self.probabilities = np.array([s.probability for s in self.strategies]) / total
        known_datasets = set(np.unique(dataset).tolist())
        self.pools: list[SourcePool] = []
        for strategy in self.strategies:
            _check_domains(strategy)
            if strategy.num_sources < 1:
                raise ValueError(f"strategy {strategy.name}: num_sources must be >= 1")
            files = np.flatnonzero(strategy.selects(domain, dataset) & (weights > 0))
            if len(files) < strategy.num_sources:
                raise ValueError(
                    f"strategy {strategy.name} mixes {strategy.num_sources} distinct file(s) but "
                    f"its pool holds {len(files)}: check its domain/dataset filters against the "
                    f"manifests (datasets present: {', '.join(sorted(known_datasets))})"
                )
            self.pools.append(SourcePool(files, weights[files]))

    def draw(self, rng: np.random.Generator, batch_size: int) -> list[tuple[int, list[int]]]:
        """For each example, the index of its strategy and its distinct source files."""
        choices = rng.choice(len(self.strategies), size=batch_size, p=self.probabilities)
        return [(int(s), self.pools[s].draw(rng, self.strategies[s].num_sources)) for s in choices]


def _check_domains(strategy: MixingStrategy) -> None:
    """Refuse a filter naming an unknown domain: a typo would silently widen or empty the pool.

    (Dataset names are not checked: a validation manifest may lack some training datasets.)
    """
    for field in ("include_domains", "exclude_domains"):
        unknown = sorted(set(getattr(strategy, field) or ()) - set(DOMAINS))
        if unknown:
            raise ValueError(
                f"strategy {strategy.name}: unknown domain(s) {', '.join(unknown)} in {field} "
                f"(known: {', '.join(DOMAINS)})"
            )


Loudness = Literal["file", "segment"]
Clipping = Literal["reject", "scale"]


@dataclass(frozen=True)
class Mixer:
    """Normalises sources, applies random gains, sums them into examples and handles clipping.

    Args:
        gain_db: (low, high) of the uniform random gain of each source, in dB.
        rms_db: RMS level, in dB relative to full scale, that every source is normalised to
            before its gain.
        min_rms_db: sources quieter than this are normalised as if they were this loud, so that
            near-silence is not amplified into loud noise.
        peak_limit: a mixture whose peak exceeds this has clipped.
        loudness: what a source's RMS is measured over: its whole "file" (the paper, Sec. 4.1:
            quiet passages stay quiet) or the "segment" read (every segment equally loud).
        clipping: what becomes of a clipped mixture: "reject" it and draw a new example (the
            paper), or "scale" it down to `peak_limit`.
        max_redraws: with "reject", rounds of redrawing before the examples still clipped are
            scaled down instead (so a corpus that always clips cannot stall the loader).
    """

    gain_db: tuple[float, float] = (-10.0, 6.0)
    rms_db: float = -20.0
    min_rms_db: float = -40.0
    peak_limit: float = 1.0
    loudness: Loudness = "file"
    clipping: Clipping = "reject"
    max_redraws: int = 10

    def __post_init__(self) -> None:
        if not self.gain_db[0] <= self.gain_db[1]:
            raise ValueError(f"gain_db must be (low, high) with low <= high, got {self.gain_db}")
        if self.peak_limit <= 0:
            raise ValueError(f"peak_limit must be positive, got {self.peak_limit}")
        if self.loudness not in ("file", "segment"):
            raise ValueError(f"loudness must be 'file' or 'segment', got {self.loudness!r}")
        if self.clipping not in ("reject", "scale"):
            raise ValueError(f"clipping must be 'reject' or 'scale', got {self.clipping!r}")
        if self.max_redraws < 0:
            raise ValueError(f"max_redraws must be >= 0, got {self.max_redraws}")

    @property
    def redraws(self) -> int:
        """Rounds of redrawing clipped examples: `max_redraws` when rejecting, else none."""
        return self.max_redraws if self.clipping == "reject" else 0

    def draw_gains(self, rng: np.random.Generator, count: int) -> torch.Tensor:
        """float32 [count] gains in dB, uniform in `gain_db`."""
        return torch.from_numpy(rng.uniform(*self.gain_db, size=count).astype(np.float32))

    def mix(
        self,
        sources: torch.Tensor,
        valid: torch.Tensor,
        example: torch.Tensor,
        gains_db: torch.Tensor,
        batch_size: int,
        file_rms: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalise, gain and sum sources into examples (which may clip: see `clipped`).

        Args:
            sources: float32 [sources, channels, time], zero after each source's valid part.
            valid: int64 [sources], real samples at the start of each source.
            example: int64 [sources], the example each source belongs to.
            gains_db: float32 [sources], each source's gain.
            batch_size: number of examples.
            file_rms: float32 [sources], the RMS of each source's whole file; needed when
                `loudness` is "file", unused otherwise.

        Returns:
            audio: float32 [batch, channels, time].
            mask: float32 [batch, 1, time], 1 where any source of the example is real audio.
        """
        channels, time = sources.shape[1:]
        if self.loudness == "file":
            if file_rms is None:
                raise ValueError("loudness 'file' needs each source's file_rms")
            rms = file_rms
        else:
            # The padding is zero, so the sum over all samples is the sum over the valid ones.
            rms = (sources.square().sum(dim=(1, 2)) / (valid.clamp(min=1) * channels)).sqrt()
        rms = rms.clamp(min=10 ** (self.min_rms_db / 20))
        scale = 10 ** ((self.rms_db + gains_db) / 20) / rms
        audio = torch.zeros(batch_size, channels, time)
        audio.index_add_(0, example, sources * scale[:, None, None])
        length = torch.zeros(batch_size, dtype=torch.int64).scatter_reduce_(
            0, example, valid, reduce="amax"
        )
        mask = (torch.arange(time) < length[:, None]).to(torch.float32)[:, None, :]
        return audio, mask

    def clipped(self, audio: torch.Tensor) -> torch.Tensor:
        """bool [batch]: the examples of float32 [batch, channels, time] peaking above the limit."""
        return audio.abs().amax(dim=(1, 2)) > self.peak_limit

    def limit(self, audio: torch.Tensor) -> torch.Tensor:
        """Scale each clipped example of [batch, channels, time] down to `peak_limit` as a whole
        (no hard clipping, relative levels kept); the others are returned unchanged."""
        peak = audio.abs().amax(dim=(1, 2))
        return audio * (self.peak_limit / peak).clamp(max=1.0)[:, None, None]
