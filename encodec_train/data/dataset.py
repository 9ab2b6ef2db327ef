"""The training stream: whole mixed batches, reproducible per (seed, stream, batch index).

Batch `b` of a stream is built from `numpy.random.Generator(PCG64([seed, stream, b]))` alone,
so its content does not depend on how many workers produce the stream, on which worker builds
it, or on what was built before; resuming at batch `b` only needs `b`. Worker `w` of `W` builds
batches `start + w`, `start + w + W`, ... and the DataLoader's round-robin over workers returns
them in order.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from encodec_train.data.manifest import Manifest
from encodec_train.data.mixing import Mixer, MixingStrategy, StrategySampler
from encodec_train.data.reverb import Reverb
from encodec_train.data.segments import RawSegment, SegmentError, SegmentReader

logger = logging.getLogger(__name__)

MAX_CONSECUTIVE_FAILURES = 100
"""A source slot that fails this many draws in a row stops the run: the data is unreachable
(an unmounted disk, a wrong root), not one bad file."""


class Corpus:
    """The files of one or more manifests under a single index.

    Args:
        manifests: the manifests, in order; file `i` of the corpus is row `i - offset` of the
            manifest it falls in.
    """

    def __init__(self, manifests: Sequence[Manifest]) -> None:
        self.manifests = list(manifests)
        self.offsets = np.cumsum([0] + [len(m) for m in self.manifests])

    @classmethod
    def load(cls, paths: Sequence[str | Path]) -> Corpus:
        """Load manifests (`.jsonl` or Arrow directories); a missing one raises, naming it."""
        if not paths:
            raise ValueError("no manifests given")
        return cls([Manifest.load(path) for path in paths])

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def column(self, name: str) -> np.ndarray:
        """One manifest field for every file of the corpus."""
        return np.concatenate([m.column(name) for m in self.manifests])

    def weights(self, min_duration: float = 0.0) -> np.ndarray:
        """float64 [files] sampling weights: duration x manifest weight, 0 below `min_duration`
        seconds (so those files are never drawn)."""
        duration = self.column("duration").astype(np.float64)
        return np.where(duration >= min_duration, duration * self.column("weight"), 0.0)

    def path(self, index: int) -> str:
        """The resolved path of file `index`."""
        manifest = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.manifests[manifest][index - int(self.offsets[manifest])].path


class MixtureDataset(IterableDataset):
    """Mixed batches of segments; batch `b` is a pure function of (seed, stream, b).

    Yields `{"audio": float32 [batch, channels, time], "mask": float32 [batch, 1, time],
    "skipped_files": int, "rejected_mixtures": int, "scaled_mixtures": int}`, where the mask is
    1 on real audio and 0 on padding, `skipped_files` counts the source draws of this batch
    whose file could not be read (each was replaced by another draw), `rejected_mixtures` the
    examples rejected because they clipped (each was replaced by a new example), and
    `scaled_mixtures` the examples scaled down to the peak limit. Use it with
    `DataLoader(batch_size=None)`.

    Args:
        corpus: the files.
        reader: reads and resamples segments.
        sampler: draws strategies and source files.
        mixer: normalises, gains and sums sources, and says what to do with clipped mixtures.
        batch_size: examples per batch.
        seed: the run's seed.
        stream: separates streams of the same seed, e.g. the rank.
        batches: the batch indices to produce, or None for an endless stream from `start`.
        reverb: impulse responses applied to examples with its probability (never to an
            example of one music source alone), or None for no reverberation.
    """

    def __init__(
        self,
        corpus: Corpus,
        reader: SegmentReader,
        sampler: StrategySampler,
        mixer: Mixer,
        batch_size: int,
        seed: int,
        stream: int,
        batches: range | None = None,
        reverb: Reverb | None = None,
    ) -> None:
        super().__init__()
        self.corpus = corpus
        self.reader = reader
        self.sampler = sampler
        self.mixer = mixer
        self.batch_size = batch_size
        self.seed = seed
        self.stream = stream
        self.batches = batches
        self.reverb = reverb
        self._music = corpus.column("domain") == "music"
        self.start = 0
        """First batch index of an endless stream; set before iterating to resume."""
        self._unreadable: dict[int, str] = {}
        """Files known to fail in this process, with the error: redrawn without re-reading."""
        self._file_rms = np.full(len(corpus), np.nan, dtype=np.float32)
        """The RMS of each whole file read so far in this process (`mixer.loudness == "file"`),
        NaN for the others: each file is decoded in full once, when first drawn, and never
        again. An array, not a dict: 4 bytes a file, 4 MB per worker for a million files."""

    @classmethod
    def from_manifests(
        cls,
        manifests: Sequence[str | Path],
        reader: SegmentReader,
        mixer: Mixer,
        strategies: Sequence[MixingStrategy],
        batch_size: int,
        seed: int,
        stream: int,
        batches: range | None = None,
        reverb: Reverb | None = None,
    ) -> MixtureDataset:
        """Load the manifests and build the strategies' pools over them.

        Raises:
            FileNotFoundError: a manifest is missing (named).
            ValueError: a strategy's pool is empty (named).
        """
        corpus = Corpus.load(manifests)
        skip_short = reader.short_files == "skip"
        sampler = StrategySampler(
            strategies,
            corpus.column("domain"),
            corpus.column("dataset"),
            corpus.weights(reader.segment_seconds if skip_short else 0.0),
        )
        return cls(corpus, reader, sampler, mixer, batch_size, seed, stream, batches, reverb)

    def __iter__(self) -> Iterator[dict]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        indices = itertools.count(self.start) if self.batches is None else iter(self.batches)
        for index in itertools.islice(indices, worker, None, workers):
            yield self.batch(index)

    def batch(self, index: int) -> dict:
        """Build batch `index` of this stream.

        With `mixer.clipping == "reject"`, each example that clips is replaced by a new one
        (strategy, files, offsets and gains drawn anew), for up to `mixer.max_redraws` rounds;
        examples still clipped after those are scaled down to the peak limit."""
        rng = np.random.Generator(np.random.PCG64([self.seed, self.stream, index]))
        audio, mask, skipped = self._examples(rng, self.batch_size)
        rejected = 0
        for _ in range(self.mixer.redraws):
            clipped = self.mixer.clipped(audio).nonzero()[:, 0]
            if len(clipped) == 0:
                break
            rejected += len(clipped)
            audio[clipped], mask[clipped], failures = self._examples(rng, len(clipped))
            skipped += failures
        scaled = int(self.mixer.clipped(audio).sum())
        return {
            "audio": self.mixer.limit(audio),
            "mask": mask,
            "skipped_files": skipped,
            "rejected_mixtures": rejected,
            "scaled_mixtures": scaled,
        }

    def _examples(self, rng: np.random.Generator, count: int) -> tuple[torch.Tensor, ...]:
        """`count` examples, not yet protected from clipping: audio, mask and the number of
        source draws replaced because their file could not be read."""
        segments: list[RawSegment] = []
        examples: list[int] = []
        used: list[int] = []
        skipped = 0
        draws = self.sampler.draw(rng, count)
        for example, (strategy, files) in enumerate(draws):
            for slot in range(len(files)):
                segment, failures = self._read_or_replace(rng, strategy, files, slot)
                skipped += failures
                segments.append(segment)
                examples.append(example)
                used.append(files[slot])
        gains = self.mixer.draw_gains(rng, len(segments))
        sources, valid = self.reader.resample(segments)
        file_rms = None
        if self.mixer.loudness == "file":
            file_rms = torch.from_numpy(self._file_rms[used])
        audio, mask = self.mixer.mix(sources, valid, torch.tensor(examples), gains, count, file_rms)
        if self.reverb is not None:
            self._reverberate(rng, audio, mask, [files for _, files in draws])
        return audio, mask, skipped

    def _reverberate(
        self, rng: np.random.Generator, audio: torch.Tensor, mask: torch.Tensor, files: list
    ) -> None:
        """Convolve each example (in place) with a random impulse response, with the reverb's
        probability, except an example of one music source alone (paper Sec. 4.1).

        The draws are made for every example, so the dry examples of a batch do not depend on
        the probability."""
        chosen = rng.random(len(files)) < self.reverb.probability
        responses = rng.integers(len(self.reverb), size=len(files))
        for example, sources in enumerate(files):
            music_alone = len(sources) == 1 and self._music[sources[0]]
            if chosen[example] and not music_alone:
                ir = self.reverb.response(int(responses[example]))
                # The room's tail stays inside the example's real audio.
                audio[example] = self.reverb.apply(audio[example], ir) * mask[example]

    def _read_or_replace(
        self, rng: np.random.Generator, strategy: int, files: list[int], slot: int
    ) -> tuple[RawSegment, int]:
        """Read `files[slot]`, replacing it in place by new draws from the strategy's pool while
        it fails; return the segment and the number of failed draws."""
        for failures in range(MAX_CONSECUTIVE_FAILURES):
            file = files[slot]
            segment = self._read(file, rng.random())
            if segment is not None:
                return segment, failures
            # The replacement is drawn from the batch's generator whether the failure was
            # discovered now or remembered, so the batch does not depend on the worker's past.
            others = files[:slot] + files[slot + 1 :]
            files[slot] = self.sampler.pools[strategy].draw(rng, 1, exclude=others)[0]
        name = self.sampler.strategies[strategy].name
        raise RuntimeError(
            f"{MAX_CONSECUTIVE_FAILURES} files in a row of strategy {name}'s pool could not be "
            f"read; the last: {self._unreadable[file]}"
        )

    def _read(self, file: int, position: float) -> RawSegment | None:
        """The segment, or None (logged once per file) when the file cannot give one."""
        if file in self._unreadable:
            return None
        path = self.corpus.path(file)
        try:
            segment = self.reader.read(path, position)
            if self.mixer.loudness == "file" and np.isnan(self._file_rms[file]):
                self._file_rms[file] = self.reader.file_rms(path)
            return segment
        except SegmentError as e:
            self._unreadable[file] = str(e)
            logger.warning("cannot use audio file, drawing another instead: %s", e)
            return None
