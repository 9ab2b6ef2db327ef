"""Codes in and out of `.ecdc` files, and audio through the codec into them and back.

A file holds each chunk's codes ([K, T], K codebooks; the 48 kHz model has 1 s chunks, each
with its scale). Without an entropy model the codes are bit-packed as the official package
writes them (version 0: the official reader decodes our files and we decode its). With one,
they are range-coded with it (`range_coding`, version 1) in segments of `seg` frames that
the model sees independently (header keys `seg`, and `grp`, the segments coded side by side,
where there are more than that; 1 s segments by default), or on request arithmetic-coded by
the official package's coder (`official_coder`, version 0, which the official reader decodes). Our header
adds, to the official keys, `fp` (the codec weights' fingerprint: decoding with other weights
is refused), `crc` (CRC-32 of the codes, so a corrupted file or a wrong entropy model gives an
error, never wrong audio) and what the caller passes (e.g. the checkpoints used).
"""

from __future__ import annotations

import io
import math
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from encodec_train.compression import official_coder, range_coding
from encodec_train.compression.container import (
    OFFICIAL_VERSION,
    RANGE_CODED_VERSION,
    SCALE,
    EcdcError,
    pack_codes,
    packed_size,
    read_header,
    unpack_codes,
    write_header,
)
from encodec_train.compression.models import fingerprint
from encodec_train.compression.step_model import StepModel
from encodec_train.model import EncodecModel, EncodedFrame
from encodec_train.model.bandwidth import bits_per_code
from encodec_train.model.lm import EntropyModel

WORD_COUNT = struct.Struct("!I")
SEGMENT_SECONDS = 1.0
"""Default length of the entropy model's independent segments (`range_coding`): what our
entropy models train on, and the official 48 kHz model's chunks."""


@dataclass
class EcdcContent:
    """What a file holds: the codes and scale of each chunk, the audio length in samples, and
    the header."""

    frames: list[EncodedFrame]
    length: int
    metadata: dict[str, Any]


def chunk_frames(model: EncodecModel, length: int) -> list[int]:
    """Frames of each chunk `model.encode` gives for `length` samples (the official reader's
    arithmetic: chunks every `segment_stride` samples, ceil(chunk / hop) frames each)."""
    segment = model.segment_length or length
    stride = model.segment_stride or length
    return [
        math.ceil(min(length - offset, segment) / model.hop_length)
        for offset in range(0, length, stride)
    ]


def segment_frames(model: EncodecModel, seconds: float | None) -> int | None:
    """Frames of the entropy model's segments of `seconds` (None or 0: one per chunk)."""
    if not seconds:
        return None
    if seconds < 0 or not math.isfinite(seconds):
        raise ValueError(
            f"segment_seconds={seconds}: give a positive number of seconds (0: once per chunk)"
        )
    return max(1, round(seconds * model.frame_rate))


def _layout(frames: Sequence[int], segment: int | None) -> tuple[list[int], list[int]]:
    """Frames and stream (their chunk's index) of the segments of chunks of `frames` frames
    (`segment` None: one segment per chunk)."""
    lengths, streams = [], []
    for index, count in enumerate(frames):
        parts = range_coding.segment_lengths([count], segment or count)
        lengths += parts
        streams += [index] * len(parts)
    return lengths, streams


def codes_checksum(codes: Sequence[torch.Tensor]) -> int:
    """CRC-32 of the chunks' codes ([K, T] each) as little-endian int16, chunk after chunk."""
    crc = 0
    for chunk in codes:
        crc = zlib.crc32(chunk.numpy().astype("<i2").tobytes(), crc)
    return crc


def check_entropy_model(lm: EntropyModel, model: EncodecModel, levels: int) -> None:
    """Refuse an entropy model that does not predict `levels` codebooks of `model`'s size."""
    if lm.codebook_size != model.quantizer.codebook_size or lm.n_q < levels:
        raise ValueError(
            f"the entropy model predicts {lm.n_q} codebooks of {lm.codebook_size} entries; "
            f"these codes have {levels} of {model.quantizer.codebook_size}"
        )


CODERS = ("range", "official")
"""With an entropy model: our deterministic range coder (version 1), or the official package's
arithmetic coder (version 0, which the official reader decodes; see `official_coder`)."""


def write_ecdc(
    content: EcdcContent,
    model: EncodecModel,
    lm: EntropyModel | None = None,
    coder: str = "range",
    segment_seconds: float | None = SEGMENT_SECONDS,
) -> bytes:
    """The file bytes of `content` (batch-1 frames from `model.encode`), entropy-coded with
    `lm` by `coder` (one of `CODERS`) when given, else bit-packed; our range coder restarts
    the entropy model every `segment_seconds` (None: once per chunk). `content.metadata`
    holds extra header keys."""
    if coder not in CODERS:
        raise ValueError(f"coder={coder!r}: choose one of {CODERS}")
    codes = [frame.codes[0].cpu() for frame in content.frames]
    expected = chunk_frames(model, content.length)
    if [c.shape[-1] for c in codes] != expected:
        raise ValueError(
            f"frames per chunk {[c.shape[-1] for c in codes]} do not match {expected}, what "
            f"{content.length} samples give with this model"
        )
    levels = codes[0].shape[0]
    metadata = {
        "m": model.name,
        "al": content.length,
        "nc": levels,
        "lm": lm is not None,
        **content.metadata,
        "fp": fingerprint(model),
        "crc": codes_checksum(codes),
    }
    version = OFFICIAL_VERSION
    if lm is None:
        bits = bits_per_code(model.quantizer.codebook_size)
        payloads = [pack_codes(chunk.numpy(), bits) for chunk in codes]
    elif coder == "official":
        check_entropy_model(lm, model, levels)
        official = official_coder.official_model(lm)
        payloads = [official_coder.encode_chunk(official, chunk) for chunk in codes]
    else:
        check_entropy_model(lm, model, levels)
        version, segment = RANGE_CODED_VERSION, segment_frames(model, segment_seconds)
        lengths, streams = _layout([chunk.shape[-1] for chunk in codes], segment)
        if segment is not None:
            metadata["seg"] = segment
        batch = range_coding.MAX_BATCH
        if len(lengths) > batch:  # else one group, whatever the batch
            metadata["grp"] = batch
        parts = torch.cat(codes, dim=-1).split(lengths, dim=-1)
        words = range_coding.encode_segments(StepModel(lm), parts, streams, batch)
        payloads = [WORD_COUNT.pack(len(w)) + w.astype(">u4").tobytes() for w in words]
    parts = [write_header(metadata, version)]
    for frame, payload in zip(content.frames, payloads, strict=True):
        if model.normalize:
            parts.append(SCALE.pack(float(frame.scale.reshape(-1)[0])))
        parts.append(payload)
    return b"".join(parts)


class _Reader:
    """Reads the payload in order, with errors that say the file is truncated."""

    def __init__(self, data: bytes, offset: int, source: str) -> None:
        self.data, self.offset, self.source = data, offset, source

    def take(self, size: int, what: str) -> bytes:
        end = self.offset + size
        if end > len(self.data):
            raise EcdcError(
                f"{self.source} is truncated: {what} would take bytes {self.offset}-{end}, the file "
                f"has {len(self.data)}"
            )
        piece, self.offset = self.data[self.offset : end], end
        return piece


def read_ecdc(
    data: bytes, model: EncodecModel, lm: EntropyModel | None = None, source: str = "the file"
) -> EcdcContent:
    """The codes of an `.ecdc` file's bytes. Raises `EcdcError` when the file is truncated,
    corrupted, or needs an entropy model or codec other than those given."""
    version, metadata, offset = read_header(data, source)
    if metadata["m"] != model.name:
        raise EcdcError(
            f"{source} was written with the codec {metadata['m']!r}; the checkpoint given "
            f"holds {model.name!r}"
        )
    if "fp" in metadata and metadata["fp"] != fingerprint(model):
        raise EcdcError(
            f"{source} was written with other weights of the codec {model.name!r} (fingerprint "
            f"{metadata['fp']}, the checkpoint given has {fingerprint(model)})"
        )
    levels, length = metadata["nc"], metadata["al"]
    if levels > model.quantizer.n_q:
        raise EcdcError(f"{source}: {levels} codebooks, the codec has {model.quantizer.n_q}")
    if version == RANGE_CODED_VERSION and not metadata["lm"]:
        raise EcdcError(f"{source}: corrupted header (version 1 without an entropy model)")
    segment, batch = metadata.get("seg"), metadata.get("grp")
    if not metadata["lm"]:
        lm = None  # bit-packed: an entropy model given is not needed
    else:
        if lm is None:
            raise EcdcError(f"{source} was coded with an entropy model: pass it (--lm)")
        check_entropy_model(lm, model, levels)
        if version == OFFICIAL_VERSION:
            frames = _read_official_coded(data, offset, model, lm, metadata, source)
            return _checked(EcdcContent(frames, length, metadata), source, lm)
        for key, value in (("seg", segment), ("grp", batch)):
            if value is not None and (type(value) is not int or value < 1):
                raise EcdcError(f"{source}: corrupted header ({key} is {value!r})")
    reader = _Reader(data, offset, source)
    bits = bits_per_code(model.quantizer.codebook_size)
    scales, chunks = [], []  # codes (packed) or coded words (entropy model) per chunk
    for index, count in enumerate(chunk_frames(model, length)):
        scale = None
        if model.normalize:
            (value,) = SCALE.unpack(reader.take(SCALE.size, f"chunk {index}'s scale"))
            if not math.isfinite(value) or value <= 0:
                raise EcdcError(f"{source}: corrupted, chunk {index} has scale {value}")
            scale = torch.tensor([[value]])
        scales.append(scale)
        if lm is None:
            raw = reader.take(packed_size(levels * count, bits), f"chunk {index}'s codes")
            chunks.append(torch.from_numpy(unpack_codes(raw, levels, count, bits)))
        else:
            (words,) = WORD_COUNT.unpack(reader.take(WORD_COUNT.size, f"chunk {index}'s size"))
            raw = reader.take(4 * words, f"chunk {index}'s {words} coded words")
            chunks.append(np.frombuffer(raw, ">u4"))
    if reader.offset != len(data):
        raise EcdcError(
            f"{source}: {len(data) - reader.offset} bytes after the last chunk (corrupted, or "
            "not written for this codec)"
        )
    if lm is not None:
        lengths, streams = _layout(chunk_frames(model, length), segment)
        try:
            parts = range_coding.decode_segments(
                StepModel(lm), chunks, lengths, streams, levels, batch or len(lengths)
            )
        except AssertionError:  # constriction's word for data its model cannot decode
            raise EcdcError(_undecodable(source, lm)) from None
        codes = torch.cat(parts, dim=-1)
        chunks = codes.split(chunk_frames(model, length), dim=-1)
    frames = [EncodedFrame(codes[None], scale) for codes, scale in zip(chunks, scales, strict=True)]
    return _checked(EcdcContent(frames, length, metadata), source, lm)


def _checked(content: EcdcContent, source: str, lm: EntropyModel | None) -> EcdcContent:
    """`content`, once its codes pass the header's checksum (files without one pass)."""
    crc = content.metadata.get("crc")
    if crc is not None and codes_checksum([f.codes[0] for f in content.frames]) != crc:
        raise EcdcError(_undecodable(source, lm))
    return content


def _read_official_coded(
    data: bytes,
    offset: int,
    model: EncodecModel,
    lm: EntropyModel,
    metadata: dict[str, Any],
    source: str,
) -> list[EncodedFrame]:
    """The chunks of a file entropy-coded by the official package, read as its reader does
    (each chunk's decoder stops where its codes end; there is no length to check)."""
    official = official_coder.official_model(lm)
    stream = io.BytesIO(data)
    stream.seek(offset)
    frames = []
    for index, count in enumerate(chunk_frames(model, metadata["al"])):
        scale = None
        if model.normalize:
            raw = stream.read(SCALE.size)
            if len(raw) < SCALE.size:
                raise EcdcError(f"{source} is truncated: chunk {index}'s scale is missing")
            scale = torch.tensor([[SCALE.unpack(raw)[0]]])
        try:
            codes = official_coder.decode_chunk(official, stream, metadata["nc"], count)
        except EOFError:
            raise EcdcError(f"{source} is truncated: chunk {index}'s codes end early") from None
        except (RuntimeError, AssertionError):  # the official decoder's failed search
            raise EcdcError(_undecodable(source, lm)) from None
        frames.append(EncodedFrame(codes[None], scale))
    return frames


def _undecodable(source: str, lm: EntropyModel | None) -> str:
    return f"{source}: the decoded codes fail the file's checksum: the file is corrupted" + (
        ", or the entropy model is not the one it was written with" if lm else ""
    )


@torch.no_grad()
def compress(
    model: EncodecModel,
    audio: torch.Tensor,
    bandwidth: float | None,
    lm: EntropyModel | None = None,
    metadata: dict[str, Any] | None = None,
    coder: str = "range",
    segment_seconds: float | None = SEGMENT_SECONDS,
) -> bytes:
    """Audio [channels, time] at the model's rate → `.ecdc` bytes at `bandwidth` kbps (see
    `write_ecdc` for `lm`, `coder` and `segment_seconds`)."""
    if audio.dim() != 2:
        raise ValueError(f"audio must be [channels, time], got shape {tuple(audio.shape)}")
    frames = model.encode(audio[None], bandwidth)
    content = EcdcContent(frames, audio.shape[-1], dict(metadata or {}))
    return write_ecdc(content, model, lm, coder, segment_seconds)


@torch.no_grad()
def decompress(
    data: bytes, model: EncodecModel, lm: EntropyModel | None = None, source: str = "the file"
) -> torch.Tensor:
    """`.ecdc` bytes → audio [channels, time]."""
    content = read_ecdc(data, model, lm, source)
    return model.decode(content.frames)[0, :, : content.length]
