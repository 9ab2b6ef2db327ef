"""Range coding of codes with the entropy model (constriction's range coder), in segments
that the model sees independently.

A file's codes are cut into segments of at most `segment` frames (each chunk on its own: the
48 kHz model's 1 s chunks are segments already); each segment starts a fresh model state,
so the decoder runs the model for all segments side by side, one step for all of them: a
file of S segments takes `segment` sequential steps of a batch of S instead of S × `segment`
steps of one. The encoder, which knows every code, computes all steps of a group of segments
at once (`StepModel.all_steps`, one pass over the weights per layer), which gives the
decoder's step-by-step logits bit for bit; segments longer than the model's context are
encoded step by step as they are decoded. `probabilities` turns the logits into integer
weights that the float64 arithmetic makes identical across machines
(`encodec_train.compression.probabilities` says how sure that is).

The segments share coders: each segment names its stream (one range coder), and a stream
holds its segments' codes in the order the lockstep visits them: for each group of `batch`
consecutive segments, step by step, the K codes of each of its segments in turn. So segments
cost no more than their codes (no word count or final flush of their own).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import constriction
import numpy as np
import torch

from encodec_train.compression.probabilities import probabilities
from encodec_train.compression.small_matmul import padded
from encodec_train.compression.step_model import StepModel

MAX_BATCH = 64
"""Segments run side by side at most, by default (their attention keys and values take
memory: 1.2 MB each for 1 s segments of the paper's 24 kHz model); more run in groups of
this many. Part of a file's format where segments share a stream (it orders their codes):
files record it."""
FORCED_ROWS = 64
"""Rows (segments × steps) whose probabilities the encoder computes at a time."""
FORCED_PASS_ROWS = 4096
"""Rows the encoder runs through the layers at once, at most (more segments go in several
passes: a row's result does not depend on the others)."""


def segment_lengths(chunk_frames: Sequence[int], segment: int) -> list[int]:
    """Frames of each segment of chunks of `chunk_frames` frames cut every `segment` frames."""
    if segment < 1:
        raise ValueError(f"segment={segment} frames: must be ≥ 1")
    return [
        min(segment, frames - start)
        for frames in chunk_frames
        for start in range(0, frames, segment)
    ]


def _family():
    # The fast construction; encoder and decoder must agree on `perfect` (both False here).
    return constriction.stream.model.Categorical(perfect=False)


StepCoder = Callable[[int, int, np.ndarray], np.ndarray]
"""(segment index, step, integer weights [K, card]) → that segment's K codes at the step."""
WeightsAt = Callable[[int], np.ndarray]
"""Step → the integer weights [segments, K, card] of a group's segments at that step."""


def _forced(model: StepModel, known: Sequence[np.ndarray], steps: int) -> WeightsAt:
    """The integer weights [segments, K, card] at each step of segments whose codes `known`
    ([K, frames] each, at most `steps` frames) are known: every step at once, bit for bit
    those of `StepModel.step`, turned into weights for a block of steps at a time."""
    levels = known[0].shape[0]
    inputs = np.zeros((len(known), levels, steps), dtype=np.int64)
    for row, codes in enumerate(known):
        inputs[row, :, 1 : codes.shape[1] + 1] = 1 + codes[:, : steps - 1]
    per_pass = max(1, FORCED_PASS_ROWS // steps)
    passes = [inputs[first : first + per_pass] for first in range(0, len(known), per_pass)]
    # Row s × steps + t: segment s at step t (each pass's padding rows dropped).
    x = np.concatenate([model.all_steps(part)[: len(part) * steps] for part in passes])
    block = max(1, FORCED_ROWS // len(known))
    cache: dict[int, np.ndarray] = {}

    def weights_at(t: int) -> np.ndarray:
        first = t - t % block
        if first not in cache:
            cache.clear()
            rows = [
                s * steps + u
                for u in range(first, min(first + block, steps))
                for s in range(len(known))
            ]
            gathered = np.zeros((padded(len(rows)), x.shape[1]))
            gathered[: len(rows)] = x[rows]
            logits = model.logits(gathered, len(rows), levels)
            cache[first] = probabilities(logits).reshape(-1, len(known), levels, logits.shape[-1])
        return cache[first][t - first]

    return weights_at


def _stepped(model: StepModel, inputs: np.ndarray, steps: int) -> WeightsAt:
    """The integer weights at each step of segments whose inputs [segments, K] the caller
    sets before asking for the next step (the codes just decoded)."""
    state = model.initial_state(len(inputs), steps)

    def weights_at(t: int) -> np.ndarray:
        if t != state.step:
            raise ValueError(f"step {t} asked for; the segments are at step {state.step}")
        return probabilities(model.step(inputs, state))  # [segments, K, card]

    return weights_at


def _lockstep(
    model: StepModel,
    lengths: Sequence[int],
    levels: int,
    code: StepCoder,
    batch: int,
    known: Sequence[np.ndarray] | None = None,
) -> None:
    """Runs `model` over segments of `lengths` frames side by side, in groups of `batch`
    consecutive segments, handing each step's weights of each unfinished segment to `code`,
    which codes them and returns the segment's codes at that step (the next step's inputs).
    With the codes `known` (encoding), a group within the model's context is computed all at
    once (`_forced`); else step by step, finished segments keeping their row with zero
    inputs."""
    if batch < 1:
        raise ValueError(f"batch={batch}: must be ≥ 1")
    for first in range(0, len(lengths), batch):
        group = range(first, min(first + batch, len(lengths)))
        steps = max(lengths[index] for index in group)
        inputs = np.zeros((len(group), levels), dtype=np.int64)
        if known is not None and steps <= model.past_context:
            weights_at = _forced(model, [known[index] for index in group], steps)
        else:
            weights_at = _stepped(model, inputs, steps)

        for t in range(steps):
            weights = weights_at(t)
            for row, index in enumerate(group):
                inputs[row] = 1 + code(index, t, weights[row]) if t < lengths[index] else 0


def encode_segments(
    model: StepModel,
    segments: Sequence[torch.Tensor],
    streams: Sequence[int],
    batch: int = MAX_BATCH,
) -> list[np.ndarray]:
    """The range-coded words (uint32) of each stream (0 … max(streams)) holding segments of
    codes ([K, frames] each, the same K), `batch` segments side by side; `streams[i]` is
    segment i's stream."""
    levels = segments[0].shape[0]
    encoders = [constriction.stream.queue.RangeEncoder() for _ in range(max(streams) + 1)]
    codes = [segment.numpy().astype(np.int32) for segment in segments]
    family = _family()

    def code(index: int, t: int, weights: np.ndarray) -> np.ndarray:
        symbols = np.ascontiguousarray(codes[index][:, t])
        encoders[streams[index]].encode(symbols, family, weights)
        return symbols

    lengths = [segment.shape[-1] for segment in segments]
    _lockstep(model, lengths, levels, code, batch, codes)
    return [encoder.get_compressed() for encoder in encoders]


def decode_segments(
    model: StepModel,
    words: Sequence[np.ndarray],
    lengths: Sequence[int],
    streams: Sequence[int],
    levels: int,
    batch: int = MAX_BATCH,
) -> list[torch.Tensor]:
    """Codes [levels, frames] of each segment of `lengths` frames in `streams`, from the
    words of each stream (as `encode_segments` wrote them with `batch`)."""
    decoders = [constriction.stream.queue.RangeDecoder(np.asarray(w, np.uint32)) for w in words]
    codes = [np.zeros((levels, frames), dtype=np.int64) for frames in lengths]
    family = _family()

    def code(index: int, t: int, weights: np.ndarray) -> np.ndarray:
        codes[index][:, t] = decoders[streams[index]].decode(family, weights)
        return codes[index][:, t]

    _lockstep(model, lengths, levels, code, batch)
    return [torch.from_numpy(segment) for segment in codes]
