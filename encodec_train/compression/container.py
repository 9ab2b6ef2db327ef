"""The `.ecdc` container of the official `encodec` package (`encodec/binary.py`): the magic
`ECDC`, a uint8 version, a big-endian uint32 length, a JSON header, then the payload; and the
payload of files without an entropy model: each chunk's codes, time-major, bit-packed at
log2(codebook size) bits a code, least significant bit first, padded to a byte per chunk.

Version 0 is the official format. Version 1 marks a payload range-coded by encodec-train
(`range_coding`), which the official reader cannot decode: it refuses the file ("Version not
supported") instead of decoding noise.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

MAGIC = b"ECDC"
HEADER = struct.Struct("!4sBI")
SCALE = struct.Struct("!f")
OFFICIAL_VERSION = 0
RANGE_CODED_VERSION = 1
VERSIONS = (OFFICIAL_VERSION, RANGE_CODED_VERSION)
REQUIRED_KEYS = {"m": str, "al": int, "nc": int, "lm": bool}
"""The official header's keys (model name, audio length in samples, codebooks, entropy model
used); our files add others, which the official reader ignores."""


class EcdcError(ValueError):
    """A `.ecdc` file that cannot be decoded: truncated, corrupted, or not an `.ecdc` file."""


def write_header(metadata: dict[str, Any], version: int = OFFICIAL_VERSION) -> bytes:
    """The header bytes for `metadata` (JSON-serialisable, with `REQUIRED_KEYS`)."""
    text = json.dumps(metadata).encode("utf-8")
    return HEADER.pack(MAGIC, version, len(text)) + text


def read_header(data: bytes, source: str) -> tuple[int, dict[str, Any], int]:
    """(version, metadata, offset of the payload) of the file's bytes `data`."""
    if len(data) < HEADER.size:
        raise EcdcError(f"{source}: {len(data)} bytes, too short for an .ecdc header (truncated)")
    magic, version, size = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise EcdcError(f"{source} is not an .ecdc file (starts with {magic!r}, not {MAGIC!r})")
    if version not in VERSIONS:
        raise EcdcError(f"{source}: .ecdc version {version} is not one of {VERSIONS}")
    end = HEADER.size + size
    if len(data) < end:
        raise EcdcError(f"{source}: truncated inside its header ({len(data)} of {end} bytes)")
    try:
        metadata = json.loads(data[HEADER.size : end].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise EcdcError(f"{source}: corrupted header, not valid JSON ({error})") from None
    if not isinstance(metadata, dict):
        raise EcdcError(f"{source}: corrupted header, not a JSON object")
    for key, kind in REQUIRED_KEYS.items():
        value = metadata.get(key)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise EcdcError(
                f"{source}: header key {key!r} is {value!r}, expected a {kind.__name__}"
            )
    if metadata["al"] < 1 or metadata["nc"] < 1:
        raise EcdcError(
            f"{source}: header says {metadata['al']} samples, {metadata['nc']} codebooks"
        )
    return version, metadata, end


def packed_size(count: int, bits: int) -> int:
    """Bytes that `count` codes of `bits` bits take, padded to a whole byte."""
    return (count * bits + 7) // 8


def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """Codes [K, T] (each < 2**bits) as the official `BitPacker` writes them: time-major
    (all K codes of step 0, then step 1, ...), least significant bit first."""
    values = np.ascontiguousarray(codes.T, dtype=np.int64).reshape(-1)
    bit_array = ((values[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(bit_array, bitorder="little").tobytes()


def unpack_codes(data: bytes, levels: int, frames: int, bits: int) -> np.ndarray:
    """Inverse of `pack_codes`: codes [levels, frames] from exactly `packed_size` bytes."""
    count = levels * frames
    bit_array = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    values = (
        bit_array[: count * bits].reshape(count, bits).astype(np.int64) << np.arange(bits)
    ).sum(1)
    return values.reshape(frames, levels).T.copy()
