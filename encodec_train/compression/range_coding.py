"""Range coding of one chunk's codes with the entropy model (constriction's range coder).

The encoder knows every code, so it computes all steps' distributions in one teacher-forced
pass (in blocks, so memory stays bounded on long files); the decoder must run the model one
step at a time, feeding back what it decoded. Both use the model in float64 on the CPU and
`probabilities` (integer weights), so they build the same distributions
(`encodec_train.compression.probabilities` says why and how sure that is). Codes are coded
time-major: the K codes of step 0, then of step 1, ...; a chunk starts a fresh model state
and a fresh coder, as in the official format.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence

import constriction
import numpy as np
import torch

from encodec_train.compression.probabilities import probabilities
from encodec_train.model.lm import EntropyModel, LMState, previous_step_inputs

BLOCK_STEPS = 256
"""Steps per teacher-forced pass while encoding (its logits and attention take memory)."""


def coding_model(lm: EntropyModel) -> EntropyModel:
    """A float64 CPU copy of `lm` in eval mode: the model that codes."""
    return copy.deepcopy(lm).to(device="cpu", dtype=torch.float64).eval()


def _family():
    # The fast construction; encoder and decoder must agree on `perfect` (both False here).
    return constriction.stream.model.Categorical(perfect=False)


@torch.no_grad()
def block_logits(lm: EntropyModel, codes: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """(first step, float64 logits [K, steps, card]) of each block of `BLOCK_STEPS` steps of
    `codes` [K, T]: teacher forcing, each block carrying the model state of the one before,
    so memory stays bounded on long files."""
    inputs = previous_step_inputs(codes[None].long())
    state: LMState | None = None
    for start in range(0, codes.shape[-1], BLOCK_STEPS):
        logits, state = lm(inputs[..., start : start + BLOCK_STEPS], state)
        yield start, logits[0]


def encode_chunk(lm: EntropyModel, codes: torch.Tensor) -> np.ndarray:
    """The range-coded words (uint32) of `codes` [K, T] under `lm` (from `coding_model`)."""
    encoder = constriction.stream.queue.RangeEncoder()
    for start, logits in block_logits(lm, codes):
        weights = probabilities(logits)  # [K, steps, card]
        steps, card = weights.shape[1:]
        symbols = codes[:, start : start + steps].T.reshape(-1).numpy().astype(np.int32)
        time_major = np.ascontiguousarray(weights.transpose(1, 0, 2)).reshape(-1, card)
        encoder.encode(symbols, _family(), time_major)
    return encoder.get_compressed()


@torch.no_grad()
def decode_chunks(
    lm: EntropyModel, chunks: Sequence[tuple[np.ndarray, int]], levels: int
) -> list[torch.Tensor]:
    """Codes [levels, frames] of each chunk from its words of `encode_chunk` and its number of
    frames, one step at a time; the chunks of a file are decoded side by side (a batch), so
    each step reads the model's weights once for all of them."""
    decoders = [constriction.stream.queue.RangeDecoder(np.asarray(w, np.uint32)) for w, _ in chunks]
    frames = [count for _, count in chunks]
    family = _family()
    codes = torch.zeros(len(chunks), levels, max(frames), dtype=torch.long)
    inputs = torch.zeros(len(chunks), levels, 1, dtype=torch.long)
    state: LMState | None = None
    for t in range(max(frames)):
        logits, state = lm(inputs, state)
        weights = probabilities(logits[:, :, 0])  # [chunks, levels, card]
        for index, decoder in enumerate(decoders):
            if t < frames[index]:  # a shorter (last) chunk has ended: its steps are ignored
                step = decoder.decode(family, weights[index])
                codes[index, :, t] = torch.from_numpy(step.astype(np.int64))
        inputs = 1 + codes[:, :, t : t + 1]
    return [chunk[:, :count] for chunk, count in zip(codes, frames, strict=True)]
