"""Classical codecs through ffmpeg as baselines (the paper compares with Opus): encode a clip
at a constant bitrate, decode it back, and measure the bitrate the bitstream really used."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import soundfile as sf
import torch
from torch import Tensor

from encodec_train.evaluation.systems import Coded, match_length

INSTALL_HINT = "install the Debian package `ffmpeg` (apt-get install -y ffmpeg)"


class FfmpegMissing(RuntimeError):
    """ffmpeg is not on PATH."""


def find_ffmpeg() -> str:
    """The ffmpeg executable, or `FfmpegMissing` naming the package to install."""
    path = shutil.which("ffmpeg")
    if path is None:
        raise FfmpegMissing(f"ffmpeg is not on PATH: {INSTALL_HINT}")
    return path


def ogg_packet_bytes(data: bytes, skip_packets: int = 2) -> int:
    """Bytes of the packets of an Ogg stream after the first `skip_packets` (Opus: OpusHead
    and OpusTags), i.e. the codec's own bitstream without Ogg page framing (RFC 3533, 7845)."""
    position = packets = total = pending = 0
    while position < len(data):
        if data[position : position + 4] != b"OggS":
            raise ValueError(f"not an Ogg page at byte {position}")
        segments = data[position + 26]
        lacing = data[position + 27 : position + 27 + segments]
        for value in lacing:
            pending += value
            if value < 255:  # a lacing value below 255 ends a packet
                if packets >= skip_packets:
                    total += pending
                packets += 1
                pending = 0
        position += 27 + segments + sum(lacing)
    return total


@dataclass
class FfmpegCodec:
    """A codec ffmpeg encodes, at constant bitrate.

    Args:
        name: the label in reports ("opus").
        encoder: ffmpeg's encoder (`libopus`, `libmp3lame`, ...).
        extension: the container's file extension; with "ogg" or "opus" the bitrate counts
            the codec packets only, otherwise the whole file.
        bitrates: kbps to evaluate at.
        min_bitrate: the codec's lowest bitrate (Opus: 6 kbps); lower requests are reported
            as not available instead of silently encoded at another rate.
        options: more ffmpeg output options (Opus: `-vbr off` for constant bitrate).
    """

    name: str = "opus"
    encoder: str = "libopus"
    extension: str = "ogg"
    bitrates: list[float] = field(default_factory=lambda: [6.0, 12.0, 24.0])
    min_bitrate: float | None = 6.0
    options: list[str] = field(default_factory=lambda: ["-vbr", "off", "-application", "audio"])

    def available(self, bitrate: float) -> bool:
        return self.min_bitrate is None or bitrate >= self.min_bitrate

    def at(self, bitrate: float) -> FfmpegSystem:
        if not self.available(bitrate):
            raise ValueError(f"{self.name} cannot encode below {self.min_bitrate:g} kbps")
        return FfmpegSystem(self, float(bitrate), find_ffmpeg())


@dataclass
class FfmpegSystem:
    """`codec` at `setting` kbps (see `FfmpegCodec`)."""

    codec: FfmpegCodec
    setting: float
    ffmpeg: str

    @property
    def label(self) -> str:
        return self.codec.name

    def __call__(self, audio: Tensor, sample_rate: int) -> Coded:
        channels, length = audio.shape
        with tempfile.TemporaryDirectory(prefix="encodec_eval_") as tmp:
            source = Path(tmp, "in.wav")
            coded = Path(tmp, f"coded.{self.codec.extension}")
            decoded = Path(tmp, "out.wav")
            sf.write(source, audio.T.float().numpy(), sample_rate, subtype="FLOAT")
            bitrate = f"{self.setting * 1000:.0f}"
            encode = ["-i", str(source), "-c:a", self.codec.encoder, "-b:a", bitrate]
            self._run([*encode, *self.codec.options, str(coded)])
            self._run(
                ["-i", str(coded), "-ar", str(sample_rate), "-ac", str(channels), str(decoded)]
            )
            data = coded.read_bytes()
            ogg = self.codec.extension in ("ogg", "opus")
            bits = 8 * (ogg_packet_bytes(data) if ogg else len(data))
            out, _ = sf.read(decoded, dtype="float32", always_2d=True)
        kbps = bits / (length / sample_rate) / 1000
        return Coded(match_length(torch.from_numpy(out.T.copy()), length), kbps)

    def _run(self, arguments: list[str]) -> None:
        command = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y", *arguments]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"{' '.join(command)} failed: {result.stderr.strip()}")
