"""`python -m encodec_train.stream`: codes and audio written chunk by chunk against the offline
model on the whole file."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from encodec_train.model import EncodedFrame, encodec_tiny, save_model
from encodec_train.stream import main

sys.path.insert(0, str(Path(__file__).parent / "model"))
from test_equivalence import make_audio, randomize_official_layout_  # noqa: E402
from test_streaming import assert_same_codes  # noqa: E402

LENGTH = 5000  # not a whole number of frames


@pytest.fixture(scope="module")
def codec(tmp_path_factory):
    torch.manual_seed(8)
    model = randomize_official_layout_(encodec_tiny(), seed=8)
    return model, save_model(model, tmp_path_factory.mktemp("codec") / "tiny.pt")


def read_codes(path: Path, n_q: int) -> torch.Tensor:
    """[1, n_q, frames] from the raw int16 frame-major file."""
    data = np.fromfile(path, dtype=np.int16).reshape(-1, n_q)
    return torch.from_numpy(data.T.astype(np.int64))[None]


def check_against_offline(model, audio, codes, decoded, bandwidth):
    with torch.no_grad():
        expected = model.encode(audio, bandwidth)[0].codes
        assert_same_codes(model, audio, codes, expected)
        # The audio is the decoding of those codes, cut to the input's length.
        offline = model.decode([EncodedFrame(codes, None)])[..., : audio.shape[-1]]
    assert decoded.shape == offline.shape
    assert (decoded - offline).abs().max().item() < 1e-5


def test_wav_in_codes_and_wav_out(codec, tmp_path, capsys):
    model, checkpoint = codec
    audio = make_audio(24_000, 1, LENGTH, batch=1)
    sf.write(tmp_path / "in.wav", audio[0].T.numpy(), 24_000, subtype="FLOAT")
    main(
        [str(checkpoint), str(tmp_path / "in.wav"), "--bandwidth", "3", "--chunk-ms", "7"]
        + ["--codes", str(tmp_path / "codes.i16"), "--audio", str(tmp_path / "out.wav")]
    )
    codes = read_codes(tmp_path / "codes.i16", 8)
    decoded = torch.from_numpy(sf.read(tmp_path / "out.wav", dtype="float32")[0])[None, None]
    check_against_offline(model, audio, codes, decoded, 3.0)
    err = capsys.readouterr().err
    assert "real-time factor" in err and "chunks of 7 ms" in err
    assert "algorithmic latency 13.3 ms (one frame, 320 samples)" in err


def test_raw_int16_stdin_to_stdout(codec, tmp_path, monkeypatch, capsysbinary):
    model, checkpoint = codec
    audio = make_audio(24_000, 1, LENGTH, batch=1, seed=4)
    pcm = np.clip(np.round(audio[0, 0].numpy() * 32768), -32768, 32767).astype(np.int16)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    main(
        [str(checkpoint), "-", "--raw-format", "int16", "--bandwidth", "6"]
        + ["--codes", str(tmp_path / "codes.i16"), "--audio", "-"]
    )
    out = np.frombuffer(capsysbinary.readouterr().out, dtype=np.int16)
    quantized = torch.from_numpy(pcm.astype(np.float32) / 32768)[None, None]
    codes = read_codes(tmp_path / "codes.i16", 16)
    with torch.no_grad():
        offline = model.decode([EncodedFrame(codes, None)])[..., :LENGTH]
    expected = np.clip(np.round(offline[0, 0].numpy() * 32768), -32768, 32767)
    assert out.shape == (LENGTH,) and np.abs(out - expected).max() <= 1
    with torch.no_grad():
        assert_same_codes(model, quantized, codes, model.encode(quantized, 6.0)[0].codes)


def test_refusals_are_clear(codec, tmp_path, capsys):
    _, checkpoint = codec
    sf.write(tmp_path / "44k.wav", np.zeros(4410, dtype=np.float32), 44_100)
    with pytest.raises(SystemExit):
        main([str(checkpoint), str(tmp_path / "44k.wav")])
    assert "44100 Hz, the model streams 24000 Hz" in capsys.readouterr().err
    # A non-causal model (as the 48 kHz one; the tiny shape keeps the test fast).
    non_causal = save_model(encodec_tiny(causal=False), tmp_path / "non_causal.pt")
    sf.write(tmp_path / "in.wav", np.zeros(4800, dtype=np.float32), 24_000)
    with pytest.raises(SystemExit):
        main([str(non_causal), str(tmp_path / "in.wav")])
    assert "cannot stream: it is not causal" in capsys.readouterr().err
