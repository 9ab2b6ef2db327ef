"""Segment reading: partial reads, exact lengths, resampling quality, channels, short files."""

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from encodec_train.data.segments import SegmentError, SegmentReader


def tone(frequency: float, seconds: float, rate: int, amplitude: float = 0.5) -> np.ndarray:
    """float32 [time] sine."""
    t = np.arange(round(seconds * rate)) / rate
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def read_one(reader: SegmentReader, path: Path, position: float) -> tuple[torch.Tensor, int]:
    """One segment [channels, time] at the model's rate and its valid length."""
    audio, valid = reader.resample([reader.read(str(path), position)])
    return audio[0], int(valid[0])


@pytest.mark.parametrize(("rate", "suffix"), [(44100, "flac"), (48000, "wav")])
def test_tone_frequency_and_amplitude_survive_resampling(tmp_path, rate, suffix):
    path = tmp_path / f"tone.{suffix}"
    sf.write(path, tone(1000.0, 3.0, rate, amplitude=0.5), rate)
    reader = SegmentReader(24000, 1)
    for position in (0.0, 0.37, 1.0):
        audio, valid = read_one(reader, path, position)
        assert audio.shape == (1, 24000) and valid == 24000
        spectrum = np.abs(np.fft.rfft(audio[0].numpy())) * 2 / 24000  # 1 Hz bins
        assert np.argmax(spectrum) == 1000
        assert spectrum[1000] == pytest.approx(0.5, rel=0.01)
        # Only the edges of the file see zeros; inside it the tone is clean everywhere.
        if position == 0.37:
            assert audio.abs().max() == pytest.approx(0.5, rel=0.01)


def test_matches_torchaudio_resampling_of_the_whole_file(tmp_path):
    """The windowed read + convolution equals resampling the whole file, then cropping."""
    rate, seconds = 44100, 3.0
    rng = np.random.default_rng(0)
    signal = (0.1 * rng.standard_normal(round(seconds * rate))).astype(np.float32)
    path = tmp_path / "noise.wav"
    sf.write(path, signal, rate, subtype="FLOAT")
    reference = torchaudio.functional.resample(torch.from_numpy(signal), rate, 24000)
    reader = SegmentReader(24000, 1)
    span = len(signal) - 44100
    for start in (0, 147 * 100, span):  # multiples of 147 input samples give whole outputs
        audio, _ = read_one(reader, path, (start + 0.5) / (span + 1))
        expected = reference[start * 80 // 147 :][:24000]
        torch.testing.assert_close(audio[0], expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 24000, 32000, 44100, 48000])
@pytest.mark.parametrize("segment_seconds", [1.0, 0.37])
def test_exact_length_at_any_rate(tmp_path, rate, segment_seconds):
    path = tmp_path / "tone.wav"
    sf.write(path, tone(440.0, 2.0, rate), rate)
    reader = SegmentReader(24000, 1, segment_seconds)
    audio, valid = read_one(reader, path, 0.5)
    assert audio.shape == (1, round(segment_seconds * 24000))
    assert valid == audio.shape[-1]


def test_reads_only_the_window(tmp_path, monkeypatch):
    """Never the whole file: one seek and one read of the window's frames."""
    path = tmp_path / "long.flac"
    sf.write(path, tone(440.0, 20.0, 44100), 44100)
    requested = []
    original = sf.SoundFile.read

    def spy(self, frames=-1, *args, **kwargs):
        requested.append(len(kwargs["out"]) if "out" in kwargs else frames)
        return original(self, frames, *args, **kwargs)

    monkeypatch.setattr(sf.SoundFile, "read", spy)
    reader = SegmentReader(24000, 1)
    reader.read(str(path), 0.5)
    assert requested == [reader.resampler(44100).length] and requested[0] < 46000


def test_downmix_by_mean_and_upmix_by_repeat(tmp_path):
    rate = 24000
    left, right = tone(500.0, 2.0, rate, 0.4), tone(500.0, 2.0, rate, 0.2)
    stereo = tmp_path / "stereo.wav"
    sf.write(stereo, np.stack([left, right], axis=1), rate, subtype="FLOAT")
    mono_audio, _ = read_one(SegmentReader(rate, 1), stereo, 0.0)
    torch.testing.assert_close(mono_audio[0], torch.from_numpy((left + right) / 2)[:rate])

    mono = tmp_path / "mono.wav"
    sf.write(mono, left, rate, subtype="FLOAT")
    stereo_audio, _ = read_one(SegmentReader(rate, 2), mono, 0.0)
    assert stereo_audio.shape == (2, rate)
    torch.testing.assert_close(stereo_audio[0], stereo_audio[1])
    torch.testing.assert_close(stereo_audio[0], torch.from_numpy(left[:rate]))


def test_short_file_is_padded_with_a_mask_or_refused(tmp_path):
    path = tmp_path / "short.wav"
    sf.write(path, tone(300.0, 0.25, 44100), 44100)
    audio, valid = read_one(SegmentReader(24000, 1, short_files="pad"), path, 0.9)
    assert audio.shape == (1, 24000)
    assert valid == 6000  # 0.25 s at 24 kHz
    assert audio[0, :valid].abs().max() > 0.4
    assert audio[0, valid:].abs().max() == 0
    with pytest.raises(SegmentError, match="shorter than a segment"):
        SegmentReader(24000, 1, short_files="skip").read(str(path), 0.0)


@pytest.mark.parametrize(
    ("name", "content"), [("garbage.flac", b"not audio at all" * 100), ("missing.flac", None)]
)
def test_unreadable_file_raises_segment_error_naming_it(tmp_path, name, content):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(SegmentError, match=name):
        SegmentReader(24000, 1).read(str(path), 0.0)


def test_channel_count_that_cannot_be_mapped_is_refused(tmp_path):
    path = tmp_path / "surround.wav"
    sf.write(path, np.zeros((24000, 6), dtype=np.float32), 24000)
    with pytest.raises(SegmentError, match="cannot map 6 channels to 2"):
        SegmentReader(24000, 2).read(str(path), 0.0)


@pytest.mark.parametrize("channels", [1, 2])
def test_file_rms_covers_the_whole_file_as_the_model_hears_it(tmp_path, channels):
    # Left: 3 s of a sine, right: silence. Downmixed to mono the file is the sine halved; in
    # stereo it is the sine's power spread over two channels. The file is longer than a block.
    left = tone(440.0, 3.0, 44100, amplitude=0.5)
    path = tmp_path / "half.wav"
    sf.write(path, np.stack([left, np.zeros_like(left)], axis=1), 44100, subtype="FLOAT")
    power = np.mean(left.astype(np.float64) ** 2)
    expected = np.sqrt(power / 4) if channels == 1 else np.sqrt(power / 2)
    assert SegmentReader(24000, channels).file_rms(str(path)) == pytest.approx(expected, rel=1e-5)


def test_file_rms_of_an_unreadable_file_is_a_segment_error(tmp_path):
    path = tmp_path / "garbage.flac"
    path.write_bytes(b"\x00garbage" * 512)
    with pytest.raises(SegmentError, match="garbage.flac"):
        SegmentReader(24000, 1).file_rms(str(path))
