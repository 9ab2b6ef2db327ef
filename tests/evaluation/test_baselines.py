"""The Opus baseline: the bitrate it really spends, Ogg packet counting, a missing ffmpeg."""

from __future__ import annotations

import shutil
import struct

import pytest

from encodec_train.evaluation import baselines
from encodec_train.evaluation.baselines import FfmpegCodec, ogg_packet_bytes
from encodec_train.evaluation.metrics import si_snr
from encodec_train.evaluation.runner import build_systems

needs_ffmpeg = pytest.mark.skipif(
    shutil.which("ffmpeg") is None, reason=f"ffmpeg missing: {baselines.INSTALL_HINT}"
)


def ogg_page(lacing: list[int]) -> bytes:
    """An Ogg page (RFC 3533) with this lacing table and zero payload bytes of that size."""
    header = b"OggS" + bytes(22) + struct.pack("B", len(lacing)) + bytes(lacing)
    return header + bytes(sum(lacing))


def test_ogg_packet_bytes_skips_the_header_packets_and_the_page_framing():
    # Page 1: OpusHead (19 bytes). Page 2: OpusTags (265 bytes: lacing 255 + 10). Page 3:
    # packets of 40 and 300 (255 + 45) bytes, and 255 bytes of a packet that ends on page 4
    # with 5 more bytes (a lacing value of 255 continues a packet across pages).
    stream = ogg_page([19]) + ogg_page([255, 10]) + ogg_page([40, 255, 45, 255]) + ogg_page([5])
    assert ogg_packet_bytes(stream) == 40 + 300 + 260
    with pytest.raises(ValueError, match="not an Ogg page at byte 0"):
        ogg_packet_bytes(b"RIFF" + bytes(40))


@needs_ffmpeg
def test_opus_spends_the_requested_bitrate_and_decodes_aligned(speech):
    for bitrate in (6, 24):
        coded = FfmpegCodec().at(bitrate)(speech, 16000)
        assert coded.audio.shape == speech.shape
        assert coded.kbps == pytest.approx(bitrate, rel=0.03)
        # Aligned and faithful at 24 kbps (a delayed decode would score far below 0 dB).
        if bitrate == 24:
            assert float(si_snr(coded.audio, speech)) > 10


def test_opus_below_6_kbps_and_a_missing_ffmpeg_are_reported_not_run(monkeypatch):
    monkeypatch.setattr(baselines.shutil, "which", lambda name: None)
    systems, skipped = build_systems([], [3.0, 6.0], [FfmpegCodec()])
    assert systems == []
    reasons = {s.setting: s.reason for s in skipped}
    assert "cannot encode below 6 kbps" in reasons[3.0]
    assert "apt-get install -y ffmpeg" in reasons[6.0]
