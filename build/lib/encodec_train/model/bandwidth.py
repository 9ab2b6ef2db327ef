"""Bitrate arithmetic of the residual quantizer (paper §3.2): each codebook of `codebook_size`
codes sends log2(codebook_size) bits per latent frame, so at `frame_rate` frames/s it costs
log2(codebook_size) · frame_rate / 1000 kbps, and a bandwidth is a number of codebooks.

The one home of that formula: the model, the quantizer, the converters and the config checks
all call these functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

# Bandwidths are written in kbps with a few decimals; a ratio this close to a whole number is
# that number (floating-point noise), anything further is a fraction of a codebook.
_WHOLE_TOLERANCE = 1e-6


def latent_frame_rate(sample_rate: int, hop_length: int) -> int:
    """Latent frames per second of an encoder with `hop_length` samples per frame (the product
    of its strides); rounded up, as the official model does."""
    return math.ceil(sample_rate / hop_length)


def bits_per_code(codebook_size: int) -> int:
    """Bits of one code: log2(codebook_size); the size must be a power of 2, at least 2."""
    if codebook_size < 2 or codebook_size & (codebook_size - 1):
        raise ValueError(f"codebook_size={codebook_size} must be a power of 2 (at least 2)")
    return codebook_size.bit_length() - 1


def bandwidth_per_codebook(codebook_size: int, frame_rate: int) -> float:
    """kbps of one codebook: log2(codebook_size) bits × `frame_rate` frames/s / 1000
    (0.75 kbps for 1024 codes at 75 frames/s)."""
    return bits_per_code(codebook_size) * frame_rate / 1000


def _describe(codebook_size: int, frame_rate: int) -> str:
    """The cost of one codebook for messages: 0.75 kbps (10 bits for 1024 codes × 75 frames/s)."""
    return (
        f"{bandwidth_per_codebook(codebook_size, frame_rate):g} kbps "
        f"({bits_per_code(codebook_size)} bits for {codebook_size} codes × {frame_rate} frames/s)"
    )


def codebooks_for_bandwidth(
    bandwidth: float, codebook_size: int, frame_rate: int, strict: bool = True
) -> int:
    """The number of codebooks that makes `bandwidth` kbps.

    Args:
        bandwidth: kbps.
        codebook_size: codes per codebook (a power of 2).
        frame_rate: latent frames per second.
        strict: refuse a bandwidth that is not a whole number of codebooks; False rounds down
            to the codebooks that fit, as the official package does.
    Raises:
        ValueError: the bandwidth is below one codebook, or (strict) not a whole number of
            codebooks; the message names the value and the nearest valid bandwidths.
    """
    per_codebook = bandwidth_per_codebook(codebook_size, frame_rate)
    ratio = bandwidth / per_codebook
    whole = round(ratio)
    if abs(ratio - whole) <= _WHOLE_TOLERANCE * max(1.0, ratio):
        ratio = whole
    if ratio < 1:
        raise ValueError(
            f"bandwidth {bandwidth} kbps is below one codebook of "
            f"{_describe(codebook_size, frame_rate)}"
        )
    if strict and ratio != whole:
        below, above = math.floor(ratio), math.ceil(ratio)
        # From whole bits per second, so that 6 codebooks of 0.45 kbps print as 2.7, not 2.7000001.
        nearest = " and ".join(
            f"{n * bits_per_code(codebook_size) * frame_rate / 1000:g} kbps ({n} codebooks)"
            for n in (below, above)
        )
        raise ValueError(
            f"bandwidth {bandwidth} kbps is not a whole number of codebooks: it is {ratio:.3g} "
            f"codebooks of {_describe(codebook_size, frame_rate)}; the nearest valid "
            f"bandwidths are {nearest}"
        )
    return math.floor(ratio)


def check_target_bandwidths(
    target_bandwidths: Sequence[float], codebook_size: int, frame_rate: int, strict: bool = True
) -> list[int]:
    """Codebooks of each target bandwidth (see `codebooks_for_bandwidth`); raises ValueError
    for an empty list or for the first bandwidth that is not valid."""
    if not target_bandwidths:
        raise ValueError("target_bandwidths is empty")
    return [
        codebooks_for_bandwidth(bandwidth, codebook_size, frame_rate, strict)
        for bandwidth in target_bandwidths
    ]
