"""`python -m encodec_train.compress` / `decompress`: files in and out, the checkpoints named
in the file, and clear errors."""

import subprocess
import sys

import pytest
import soundfile as sf
import torch
from compression_helpers import chirp
from encodec.model import LMModel

from encodec_train.compression.cli import compress_main, decompress_main
from encodec_train.compression.container import read_header
from encodec_train.compression.models import save_entropy_model
from encodec_train.model import save_model


@pytest.fixture
def files(tmp_path, tiny_codec, tiny_lm):
    codec = save_model(tiny_codec, tmp_path / "codec.pt")
    lm = save_entropy_model(tiny_lm, tmp_path / "lm.pt")
    audio = chirp(tiny_codec, 7000)
    wav = tmp_path / "in.wav"
    sf.write(wav, audio.T.numpy(), tiny_codec.sample_rate, subtype="FLOAT")
    return codec, lm, wav, audio


@pytest.mark.parametrize("use_lm", [False, True])
def test_compress_then_decompress_decodes_the_codes(tmp_path, tiny_codec, files, use_lm, capsys):
    codec, lm, wav, audio = files
    extra = ["--lm", str(lm), "--lm-segment", "0.05"] if use_lm else []  # 0.05 s: 4 frames
    compress_main(
        [str(wav), str(tmp_path / "a.ecdc"), "--checkpoint", str(codec), "--bandwidth", "3", *extra]
    )
    assert "kbps" in capsys.readouterr().out
    data = (tmp_path / "a.ecdc").read_bytes()
    metadata = read_header(data, "a.ecdc")[1]
    assert metadata["lm"] is use_lm and metadata["ckpt"] == str(codec.resolve())
    assert metadata.get("seg") == (4 if use_lm else None)
    decompress_main(
        [str(tmp_path / "a.ecdc"), str(tmp_path / "out.wav")]
    )  # checkpoints from the file
    decoded, rate = sf.read(tmp_path / "out.wav", dtype="float32", always_2d=True)
    with torch.no_grad():
        expected = tiny_codec.decode(tiny_codec.encode(audio[None], 3.0))[0, :, : audio.shape[-1]]
    assert rate == tiny_codec.sample_rate and decoded.shape == (audio.shape[-1], 1)
    # 16-bit WAV: within one quantisation step of the decoded audio.
    assert (torch.from_numpy(decoded.T) - expected.clamp(-1, 1)).abs().max() <= 1 / 32768 + 1e-6


def test_errors_are_one_clear_line(tmp_path, files, capsys):
    codec, lm, wav, _ = files
    target = tmp_path / "a.ecdc"
    compress_main([str(wav), str(target), "--checkpoint", str(codec), "--lm", str(lm)])
    target.write_bytes(target.read_bytes()[:-5])
    with pytest.raises(SystemExit) as exit_info:
        decompress_main([str(target), str(tmp_path / "out.wav")])
    assert exit_info.value.code == 1
    assert capsys.readouterr().err.startswith(f"error: {target} is truncated")
    with pytest.raises(SystemExit):
        compress_main([str(wav), str(target), "--checkpoint", str(tmp_path / "none.pt")])
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        compress_main([str(wav), str(target), "--checkpoint", str(codec), "--bandwidth", "5"])
    assert "bandwidth=5.0 kbps is not offered" in capsys.readouterr().err


def test_an_entropy_model_given_as_the_codec_is_named_as_one(tmp_path, files, tiny_lm, capsys):
    codec, lm, wav, _ = files
    training = tmp_path / "last.ckpt"  # as a `+recipe=*_lm` run saves it (lm_module.py)
    state = {f"lm.{key}": value for key, value in tiny_lm.state_dict().items()}
    torch.save({"state_dict": state, "lm_config": tiny_lm.config}, training)
    official = tmp_path / "encodec_lm_24khz.th"
    torch.save(LMModel(2, 32, num_layers=1, dim=16).state_dict(), official)
    target = tmp_path / "a.ecdc"
    for given in (lm, training, official):
        with pytest.raises(SystemExit) as exit_info:
            compress_main([str(wav), str(target), "--checkpoint", str(given)])
        assert exit_info.value.code == 1
        assert capsys.readouterr().err == (
            f"error: {given} is an entropy model's checkpoint: --checkpoint takes the codec, "
            "--lm the entropy model\n"
        )
    compress_main([str(wav), str(target), "--checkpoint", str(codec), "--lm", str(lm)])
    with pytest.raises(SystemExit):
        decompress_main([str(target), str(tmp_path / "out.wav"), "--checkpoint", str(lm)])
    assert (
        "is an entropy model's checkpoint: --checkpoint takes the codec" in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "options, named",
    [
        (["--coder", "official"], "give --lm too"),
        (["--lm-segment", "0"], "give --lm too"),
        (["--lm", "LM", "--coder", "official", "--lm-segment", "2"], "for our range coder"),
    ],
)
def test_coder_options_are_refused_where_they_would_be_ignored(
    tmp_path, files, options, named, capsys
):
    codec, lm, wav, _ = files
    options = [str(lm) if option == "LM" else option for option in options]
    target = tmp_path / "a.ecdc"
    with pytest.raises(SystemExit) as exit_info:
        compress_main([str(wav), str(target), "--checkpoint", str(codec), *options])
    assert exit_info.value.code == 2 and named in capsys.readouterr().err
    assert not target.exists()


@pytest.mark.slow
def test_the_modules_run_as_commands(tmp_path, files):
    codec, lm, wav, _ = files
    for command in (
        [
            "encodec_train.compress",
            str(wav),
            str(tmp_path / "a.ecdc"),
            "--checkpoint",
            str(codec),
            "--lm",
            str(lm),
        ],
        ["encodec_train.decompress", str(tmp_path / "a.ecdc"), str(tmp_path / "b.wav")],
    ):
        subprocess.run([sys.executable, "-m", *command], check=True, capture_output=True)
    assert sf.info(tmp_path / "b.wav").frames == 7000
