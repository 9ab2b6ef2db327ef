"""The LightningDataModule: mixed training batches that resume mid-epoch, fixed validation.

The module counts the training batches it hands to the training loop and keeps the count in
its state dict, so a checkpoint records exactly where the stream was; after a resume the train
loader starts at that batch. Since batch `b` of a rank is a pure function of (seed, rank, b),
the resumed run sees the same batches as an uninterrupted one, whatever `num_workers`.

It also counts, in `BATCH_COUNTS`, the source draws that were replaced because their file could
not be read, the mixtures rejected because they clipped, and those scaled down instead. The
counts are built where the batch is (in a loader worker) and travel with it; in a multi-rank
run each batch's counts are summed over the ranks, so every rank, rank 0 which logs included,
holds the run's totals.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader

from encodec_train.data.dataset import MixtureDataset
from encodec_train.data.mixing import Clipping, Loudness, Mixer, MixingStrategy
from encodec_train.data.reverb import Reverb
from encodec_train.data.segments import SegmentReader, ShortFiles

BATCH_COUNTS = ("skipped_files", "rejected_mixtures", "scaled_mixtures")
"""The counts each batch carries (see `MixtureDataset`), summed by the data module."""

VALID_STREAM = 2**32 - 1
"""The stream of the validation batches, apart from every rank's training stream; validation
batch `b` is the same whichever rank evaluates it."""


def _single_threaded_worker(worker_id: int) -> None:
    """Each worker builds whole batches on its own; several torch threads per worker would
    only compete with the other workers for the cores."""
    torch.set_num_threads(1)


class ResumableDataLoader(DataLoader):
    """A DataLoader over an endless `MixtureDataset` whose every new iterator starts at the
    batch `next_batch()` names (Lightning creates one per epoch and one after a resume).

    Args:
        dataset: the stream; its `start` is set before each iteration.
        next_batch: the index of the next batch to train on.
        **kwargs: DataLoader options; `batch_size` is None since the dataset yields batches.
    """

    def __init__(self, dataset: MixtureDataset, next_batch: Callable[[], int], **kwargs: Any):
        super().__init__(dataset, batch_size=None, **kwargs)
        self.next_batch = next_batch

    def __iter__(self):
        # Workers copy the dataset when the iterator starts (no persistent workers), so they see
        # this start.
        self.dataset.start = self.next_batch()
        return super().__iter__()

    def state_dict(self) -> dict:
        """Empty: the position is the datamodule's state. Having this interface tells
        Lightning that the loader resumes mid-epoch (else it warns on each such resume)."""
        return {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Nothing to restore here; see `state_dict`."""


class AudioDataModule(L.LightningDataModule):
    """Mixed 1-second segments for codec training (paper Sec. 4.1).

    Args:
        train_manifests: manifest files (`.jsonl` or Arrow directories) of the training data.
        valid_manifests: manifests of the validation data, or None for no validation.
        sample_rate: the model's rate in Hz.
        channels: the model's channels.
        segment_seconds: length of a segment.
        batch_size: examples per batch on each rank.
        num_workers: DataLoader worker processes per rank.
        seed: the data seed; batch b of rank r is a pure function of (seed, r, b).
        strategies: mixing strategies as mappings of `MixingStrategy` fields
            (`name`, `probability`, `num_sources`, `include_domains`, `exclude_domains`,
            `include_datasets`, `exclude_datasets`); the paper's s1-s4 are in
            `encodec_train/conf/data/mixture_24khz.yaml`, their one home.
        gain_db: (low, high) of the uniform random gain per source, in dB.
        rms_db: RMS level (dBFS) every source is normalised to before its gain.
        min_rms_db: quieter sources are normalised as if they were this loud.
        peak_limit: mixtures with a higher peak have clipped.
        loudness: measure each source's RMS over its whole "file" or its "segment".
        clipping: "reject" clipped mixtures and draw new examples, or "scale" them down.
        max_redraws: rounds of redrawing clipped examples before scaling them down instead.
        reverb_probability: chance that an example is reverberated (never one music source
            alone); 0 for no reverberation.
        impulse_responses: the impulse-response manifest (`{"path", "rt60"}` lines), needed
            when `reverb_probability` > 0.
        reverb_rt60: (low, high) RT60 in seconds of the responses used.
        short_files: "pad" files shorter than a segment (masked) or "skip" them.
        valid_batches: validation batches in all, shared among the ranks.
    """

    def __init__(
        self,
        train_manifests: Sequence[str],
        valid_manifests: Sequence[str] | None,
        sample_rate: int,
        channels: int,
        segment_seconds: float = 1.0,
        batch_size: int = 8,
        num_workers: int = 4,
        seed: int = 0,
        strategies: Sequence[Mapping[str, Any] | MixingStrategy] = (),
        gain_db: Sequence[float] = (-10.0, 6.0),
        rms_db: float = -20.0,
        min_rms_db: float = -40.0,
        peak_limit: float = 1.0,
        loudness: Loudness = "file",
        clipping: Clipping = "reject",
        max_redraws: int = 10,
        reverb_probability: float = 0.0,
        impulse_responses: str | None = None,
        reverb_rt60: Sequence[float] = (0.3, 1.3),
        short_files: ShortFiles = "pad",
        valid_batches: int = 8,
    ) -> None:
        super().__init__()
        self.train_manifests = list(train_manifests)
        self.valid_manifests = None if valid_manifests is None else list(valid_manifests)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.valid_batches = valid_batches
        if not strategies:
            raise ValueError(
                "no mixing strategies: give data.strategies (the paper's s1-s4 are in "
                "encodec_train/conf/data/mixture_24khz.yaml)"
            )
        self.strategies = [MixingStrategy(**s) if isinstance(s, Mapping) else s for s in strategies]
        self.reader = SegmentReader(sample_rate, channels, segment_seconds, short_files)
        self.mixer = Mixer(
            tuple(gain_db), rms_db, min_rms_db, peak_limit, loudness, clipping, max_redraws
        )
        if reverb_probability > 0 and impulse_responses is None:
            raise ValueError("data.reverb_probability > 0 needs data.impulse_responses")
        self.reverb_probability = reverb_probability
        self.impulse_responses = impulse_responses
        self.reverb_rt60 = tuple(reverb_rt60)
        self.reverb: Reverb | None = None
        self.batches_consumed = 0
        """Training batches handed to the training loop so far, over the whole run."""
        self._counts = dict.fromkeys(BATCH_COUNTS, 0)
        """`BATCH_COUNTS` counted on the host: single-process runs and checkpoint restores."""
        self._counts_all_ranks: torch.Tensor | None = None
        """int64 [len(BATCH_COUNTS)] summed over the ranks since the start or restore, on the
        device."""
        self.train_dataset: MixtureDataset | None = None
        self.valid_dataset: MixtureDataset | None = None

    def setup(self, stage: str) -> None:
        """Load the manifests and build the pools (errors name a missing manifest or a strategy
        whose pool is empty) for this rank, and the impulse responses when reverberating."""
        rank, world_size = 0, 1
        if self.trainer is not None:
            rank, world_size = self.trainer.global_rank, self.trainer.world_size
        if stage == "fit" and self.train_dataset is None:
            self.train_dataset = self._dataset(self.train_manifests, rank)
        if self.valid_manifests is not None and self.valid_dataset is None:
            batches = range(rank, self.valid_batches, world_size)
            self.valid_dataset = self._dataset(self.valid_manifests, VALID_STREAM, batches)

    def _dataset(
        self, manifests: Sequence[str], stream: int, batches: range | None = None
    ) -> MixtureDataset:
        dataset = MixtureDataset.from_manifests(
            manifests,
            self.reader,
            self.mixer,
            self.strategies,
            self.batch_size,
            self.seed,
            stream,
            batches,
        )
        # After the audio manifests, so that a run missing everything names those first.
        if self.reverb_probability > 0 and self.reverb is None:
            self.reverb = Reverb.load(
                self.impulse_responses,
                self.reader.sample_rate,
                self.reverb_probability,
                self.reverb_rt60,
            )
        dataset.reverb = self.reverb
        return dataset

    def _loader_options(self, num_workers: int) -> dict[str, Any]:
        return {
            "num_workers": num_workers,
            "worker_init_fn": _single_threaded_worker,
            "pin_memory": torch.cuda.is_available(),
        }

    def train_dataloader(self) -> ResumableDataLoader:
        """The endless training stream of this rank, from batch `batches_consumed` on."""
        return ResumableDataLoader(
            self.train_dataset,
            lambda: self.batches_consumed,
            **self._loader_options(self.num_workers),
        )

    def val_dataloader(self) -> DataLoader | list:
        """This rank's share of the fixed validation batches (none without valid manifests)."""
        if self.valid_dataset is None:
            return []
        workers = min(self.num_workers, len(self.valid_dataset.batches))
        return DataLoader(self.valid_dataset, batch_size=None, **self._loader_options(workers))

    def count(self, name: str) -> int:
        """One of `BATCH_COUNTS` over the training batches the training loop took so far,
        summed over all ranks (copies the counts to the host)."""
        on_device = self._counts_all_ranks
        extra = 0 if on_device is None else int(on_device[BATCH_COUNTS.index(name)])
        return self._counts[name] + extra

    @property
    def skipped_files(self) -> int:
        """Source draws replaced because their file could not be read, in the training batches
        the training loop took so far, summed over all ranks (copies the count to the host)."""
        return self.count("skipped_files")

    @property
    def rejected_mixtures(self) -> int:
        """Examples rejected because they clipped (each replaced by a new one), in the training
        batches taken so far, summed over all ranks. Of all examples drawn, the fraction
        rejected is `rejected / (batches_consumed * batch_size * world_size + rejected)`."""
        return self.count("rejected_mixtures")

    @property
    def scaled_mixtures(self) -> int:
        """Examples scaled down to the peak limit (all clipped ones under `clipping: scale`,
        those still clipped after `max_redraws` under `reject`), summed over all ranks."""
        return self.count("scaled_mixtures")

    def on_before_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        """Count each training batch as the training loop takes it (this hook runs once per
        batch consumed, after any prefetching), and take `BATCH_COUNTS` out of the batch.

        Draws replaced or rejected in validation batches, or in batches prefetched but never
        trained on, are not counted (their files' warnings are printed all the same)."""
        counts = [batch.pop(name) for name in BATCH_COUNTS]
        if self.trainer.training:
            self.batches_consumed += 1
            self._add_counts(counts)
        return batch

    def _add_counts(self, counts: list[int]) -> None:
        """Add one training batch's `BATCH_COUNTS`; with several ranks, sum them over the ranks.

        Every rank takes its training batches in step (DDP needs it), so the all-reduce of one
        small vector per batch meets its peers. It is queued on the device and waited for by
        nobody: the host only syncs when a count is read."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if not distributed or self.trainer.world_size == 1:
            for name, count in zip(BATCH_COUNTS, counts, strict=True):
                self._counts[name] += count
            return
        device = self.trainer.strategy.root_device
        summed = torch.tensor(counts, dtype=torch.int64, device=device)
        torch.distributed.all_reduce(summed)
        total = self._counts_all_ranks
        self._counts_all_ranks = summed if total is None else total + summed

    def state_dict(self) -> dict[str, int]:
        return {"batches_consumed": self.batches_consumed} | {
            name: self.count(name) for name in BATCH_COUNTS
        }

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        self.batches_consumed = state_dict["batches_consumed"]
        # Every rank restores the totals of all ranks that rank 0 saved; checkpoints written
        # before the clipping counts existed have none.
        self._counts = {name: state_dict.get(name, 0) for name in BATCH_COUNTS}
        self._counts_all_ranks = None
