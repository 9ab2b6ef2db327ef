"""Reading fixed-length segments of audio files: partial reads, resampling, channel mapping.

A segment is read by seeking into the file and decoding only the frames it needs plus the
resampling filter's half-length on each side (so the filter sees real signal, not zeros, at
the segment's edges). Segments are then resampled to the model's rate in batches, one strided
convolution per source rate with a sinc kernel built once per process, to exactly
`round(segment_seconds * sample_rate)` samples.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio

ShortFiles = Literal["pad", "skip"]


class SegmentError(Exception):
    """A file that cannot give a segment: unreadable, empty, or unusable under the config."""


class WindowResampler:
    """Resamples read windows of one source rate to exactly `out_frames` samples.

    The sinc kernel is torchaudio's (`torchaudio.transforms.Resample`, Hann window, 6 zero
    crossings, roll-off 0.99), built once. It is applied as one strided convolution over the
    window: the window already holds the filter's context on both sides (`margin` before the
    segment, `length - margin - frames` after it), so the zero padding and the cropping of
    `torchaudio.functional.resample` are not needed.

    Args:
        orig_rate: the source rate in Hz.
        new_rate: the model's rate in Hz.
        out_frames: output samples per window.
    """

    def __init__(self, orig_rate: int, new_rate: int, out_frames: int) -> None:
        self.out_frames = out_frames
        self.frames = -(-out_frames * orig_rate // new_rate)
        """Samples of the segment proper at the source rate."""
        self.kernel: torch.Tensor | None = None
        if orig_rate == new_rate:
            self.margin, self.length = 0, self.frames
            return
        resample = torchaudio.transforms.Resample(orig_rate, new_rate, dtype=torch.float32)
        # The kernel maps `stride` input samples to `phases` output samples; output block j
        # reads input [j * stride - width, j * stride + stride + width) around the segment.
        gcd = math.gcd(orig_rate, new_rate)
        self.stride = orig_rate // gcd
        self.kernel = resample.kernel
        blocks = -(-out_frames * gcd // new_rate)
        self.margin = resample.width
        """Samples read before the segment's start (the filter's half-length)."""
        self.length = blocks * self.stride + 2 * resample.width
        """Samples read per window, margins included."""

    def __call__(self, windows: torch.Tensor) -> torch.Tensor:
        """float32 [rows, length] windows to float32 [rows, out_frames]."""
        if self.kernel is None:
            return windows
        blocks = torch.nn.functional.conv1d(windows[:, None], self.kernel, stride=self.stride)
        return blocks.transpose(1, 2).reshape(len(windows), -1)[:, : self.out_frames]


@functools.cache
def window_resampler(orig_rate: int, new_rate: int, out_frames: int) -> WindowResampler:
    """The resampler for one (rate pair, length), built once per process."""
    return WindowResampler(orig_rate, new_rate, out_frames)


@dataclass
class RawSegment:
    """A segment as read, before resampling.

    Args:
        audio: float32 [channels, WindowResampler.length] at `sample_rate`, where channels is
            the model's or 1 (a mono file, repeated after resampling).
        sample_rate: the file's rate in Hz.
        valid: how many samples of the segment proper are real audio (the rest is padding).
    """

    audio: np.ndarray
    sample_rate: int
    valid: int


class SegmentReader:
    """Reads random segments of audio files and resamples them to the model's format.

    Args:
        sample_rate: the model's rate in Hz.
        channels: the model's channels (1 or 2); more channels are downmixed by their mean,
            mono is upmixed by repetition.
        segment_seconds: segment length; segments have exactly
            `round(segment_seconds * sample_rate)` samples.
        short_files: what to do with a file shorter than a segment: "pad" it with zeros
            (the mask marks the real part) or "skip" it (raise `SegmentError`, so the caller
            draws another file).
    """

    def __init__(
        self,
        sample_rate: int,
        channels: int,
        segment_seconds: float = 1.0,
        short_files: ShortFiles = "pad",
    ) -> None:
        if short_files not in ("pad", "skip"):
            raise ValueError(f"short_files must be 'pad' or 'skip', got {short_files!r}")
        self.sample_rate = sample_rate
        self.channels = channels
        self.segment_seconds = segment_seconds
        self.frames = round(segment_seconds * sample_rate)
        self.short_files = short_files

    def resampler(self, orig_rate: int) -> WindowResampler:
        """The resampler (and read window) for a file at `orig_rate`."""
        return window_resampler(orig_rate, self.sample_rate, self.frames)

    def read(self, path: str, position: float) -> RawSegment:
        """Read the segment at `position` in [0, 1) of the possible start offsets of `path`.

        Raises:
            SegmentError: the file cannot be opened or decoded, holds no audio, has a channel
                count that cannot be mapped, or is short while `short_files` is "skip".
        """
        try:
            with sf.SoundFile(path) as f:
                return self._read_open(f, path, position)
        except (OSError, sf.SoundFileError) as e:
            raise SegmentError(f"{path}: {e}") from e

    def _read_open(self, f: sf.SoundFile, path: str, position: float) -> RawSegment:
        if f.channels != self.channels and 1 not in (f.channels, self.channels):
            raise SegmentError(f"{path}: cannot map {f.channels} channels to {self.channels}")
        if f.frames <= 0:
            raise SegmentError(f"{path}: no audio frames")
        window = self.resampler(f.samplerate)
        if f.frames < window.frames and self.short_files == "skip":
            raise SegmentError(f"{path}: shorter than a segment ({f.frames} < {window.frames})")
        span = max(f.frames - window.frames, 0)
        start = min(int(position * (span + 1)), span)
        # The margins may reach past either end of the file: those samples stay zero, which is
        # what torchaudio's resampling would have padded with anyway.
        first = start - window.margin
        stop = first + window.length
        lo, hi = max(first, 0), min(stop, f.frames)
        buffer = np.zeros((stop - first, f.channels), dtype=np.float32)
        f.seek(lo)
        # A file whose header over-states its length decodes fewer frames: count only those.
        decoded = len(f.read(hi - lo, out=buffer[lo - first : hi - first]))
        valid = min(window.frames, lo + decoded - start)
        if valid <= 0:
            raise SegmentError(f"{path}: no audio decoded at frame {start}")
        if self.channels == 1 and f.channels > 1:
            # A matrix-vector product: numpy's mean over a short last axis is 30x slower.
            audio = (buffer @ np.full(f.channels, 1 / f.channels, dtype=np.float32))[None]
        else:
            audio = buffer.T
        return RawSegment(audio, f.samplerate, valid)

    def file_rms(self, path: str) -> float:
        """The RMS of the whole file over all its samples and channels, downmixed as a segment
        would be (a mono file repeated to stereo keeps its RMS); at the file's own rate.

        Decodes the file once, in blocks, so a long file costs no more memory than a block.

        Raises:
            SegmentError: the file cannot be opened or decoded, or holds no audio.
        """
        total, count = 0.0, 0
        try:
            with sf.SoundFile(path) as f:
                downmix = np.full(f.channels, 1 / f.channels, dtype=np.float32)
                for block in f.blocks(blocksize=1 << 16, dtype="float32", always_2d=True):
                    if self.channels == 1 and f.channels > 1:
                        block = block @ downmix
                    values = block.ravel()
                    total += float(values @ values)
                    count += values.size
        except (OSError, sf.SoundFileError) as e:
            raise SegmentError(f"{path}: {e}") from e
        if count == 0:
            raise SegmentError(f"{path}: no audio frames")
        return math.sqrt(total / count)

    def resample(self, segments: list[RawSegment]) -> tuple[torch.Tensor, torch.Tensor]:
        """Resample and crop segments to the model's format, one convolution per source rate.

        Returns:
            audio: float32 [len(segments), channels, frames], zero after the valid part.
            valid: int64 [len(segments)], real samples at the start of each segment.
        """
        audio = torch.empty(len(segments), self.channels, self.frames)
        valid = torch.empty(len(segments), dtype=torch.int64)
        for rate in sorted({s.sample_rate for s in segments}):
            group = [i for i, s in enumerate(segments) if s.sample_rate == rate]
            rows = torch.from_numpy(np.concatenate([segments[i].audio for i in group]))
            rows = self.resampler(rate)(rows)
            row = 0
            for i in group:
                count = len(segments[i].audio)
                audio[i] = rows[row : row + count]  # broadcasts a mono file to all channels
                row += count
                valid[i] = min(self.frames, segments[i].valid * self.sample_rate // rate)
                # Padding is exactly zero, not the filter's decay of the file's last samples.
                audio[i, :, valid[i] :] = 0
        return audio, valid
