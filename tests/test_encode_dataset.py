"""Bulk encoding into code shards: each file's codes against `model.encode` of that file alone
(the weight-normed model, batch of one), resuming, and refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F

from encodec_train.data.code_shards import CodeShardDataset, read_code_shard
from encodec_train.data.manifest import ManifestEntry, write_manifest
from encodec_train.encode_dataset import encode_dataset, main
from encodec_train.model import encodec_tiny, save_model

sys.path.insert(0, str(Path(__file__).parent / "model"))
from test_equivalence import randomize_official_layout_  # noqa: E402
from test_streaming import assert_same_codes  # noqa: E402

HOP = 320
# (samples, rate, channels): a whole number of frames, a partial last frame, shorter than the
# 7-frame start-up (encoded alone), one frame, stereo at 44.1 kHz (mixed down, resampled).
FILES = [(4800, 24000, 1), (5000, 24000, 1), (1000, 24000, 1), (320, 24000, 1), (6000, 44100, 2)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, Path, torch.nn.Module]:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    entries = []
    for index, (samples, rate, channels) in enumerate(FILES):
        path = root / f"file_{index}.wav"
        sf.write(path, 0.3 * rng.standard_normal((samples, channels)), rate, subtype="FLOAT")
        entries.append(ManifestEntry(path.name, samples / rate, rate, channels, "speech", "t"))
    manifest = write_manifest(entries, root / "files.jsonl")
    torch.manual_seed(6)
    model = randomize_official_layout_(encodec_tiny(), seed=6)
    return manifest, save_model(model, root / "model.pt"), model


def padded_audio(model, path: Path) -> torch.Tensor:
    """[1, 1, time] of the file, read and converted independently (torchaudio), zero-padded to
    whole frames."""
    import torchaudio.functional as AF

    data, rate = sf.read(path, dtype="float32", always_2d=True)
    audio = torch.from_numpy(data.T.copy()).mean(0, keepdim=True)
    if rate != model.sample_rate:
        audio = AF.resample(audio, rate, model.sample_rate)
    return F.pad(audio, (0, -audio.shape[-1] % HOP))[None]


def test_codes_equal_encoding_each_file_alone(corpus, tmp_path):
    manifest, checkpoint, model = corpus
    paths = encode_dataset(
        manifest, checkpoint, tmp_path, 3.0, files_per_shard=3, batch_files=2, progress=False
    )
    assert [p.name for p in paths] == ["shard-000000.safetensors", "shard-000001.safetensors"]
    items = [item for path in paths for item in read_code_shard(path)[0]]
    assert [Path(source).name for source, _ in items] == [f"file_{i}.wav" for i in range(5)]
    for (source, codes), (samples, rate, _) in zip(items, FILES, strict=True):
        audio = padded_audio(model, Path(source))
        with torch.no_grad():
            expected = model.encode(audio, 3.0)[0].codes
        assert codes.dtype == torch.int16
        assert_same_codes(model, audio, codes.long()[None], expected)
        assert codes.shape == (8, -(-round(samples * 24000 / rate) // HOP))
    # A whole number of frames needs no padding: exactly model.encode of the file.
    with torch.no_grad():
        audio = torch.from_numpy(sf.read(items[0][0], dtype="float32")[0])[None, None]
        expected = model.encode(audio, 3.0)[0].codes
    assert_same_codes(model, audio, items[0][1].long()[None], expected)
    metadata = read_code_shard(paths[0])[1]
    assert (metadata["n_q"], metadata["bandwidth"], metadata["frame_rate"]) == (8, 3.0, 75)
    assert metadata["codebook_size"] == 32 and metadata["checkpoint"] == str(checkpoint)
    # 15, 16, 4, 1 and 11 frames: 3 + 3 + 0 + 0 + 2 windows of 5.
    assert len(CodeShardDataset(tmp_path, frames=5)) == 8


def test_rerun_skips_done_shards_and_refuses_other_settings(corpus, tmp_path):
    manifest, checkpoint, _ = corpus
    first = encode_dataset(manifest, checkpoint, tmp_path, 1.5, files_per_shard=2, progress=False)
    stamps = {p: p.stat().st_mtime_ns for p in first}
    before = read_code_shard(first[1])[0]
    first[1].unlink()  # as if the run had stopped before this shard
    again = encode_dataset(manifest, checkpoint, tmp_path, 1.5, files_per_shard=2, progress=False)
    assert again == first
    assert all(p.stat().st_mtime_ns == stamps[p] for p in first if p != first[1])
    after = read_code_shard(first[1])[0]
    assert all(torch.equal(a[1], b[1]) for a, b in zip(before, after, strict=True))
    assert json.loads((tmp_path / "encoding.json").read_text())["bandwidth"] == 1.5
    with pytest.raises(ValueError, match=r"another encoding.*bandwidth.*\(1\.5, 3\.0\)"):
        encode_dataset(manifest, checkpoint, tmp_path, 3.0, files_per_shard=2, progress=False)


def test_paths_are_recorded_absolute_so_a_relative_rerun_resumes(corpus, tmp_path, monkeypatch):
    manifest, checkpoint, _ = corpus
    monkeypatch.chdir(checkpoint.parent)
    out = tmp_path / "out"
    first = encode_dataset(
        Path(manifest.name), Path(checkpoint.name), out, 1.5, files_per_shard=3, progress=False
    )
    recorded = json.loads((out / "encoding.json").read_text())
    assert recorded["manifest"] == str(manifest.resolve())
    assert recorded["checkpoint"] == str(checkpoint.resolve())
    first[1].unlink()
    again = encode_dataset(manifest, checkpoint, out, 1.5, files_per_shard=3, progress=False)
    assert again == first and first[1].is_file()


def test_cli_names_a_bandwidth_the_model_lacks(corpus, tmp_path, capsys):
    manifest, checkpoint, _ = corpus
    with pytest.raises(SystemExit):
        main([str(manifest), str(checkpoint), str(tmp_path), "--bandwidth", "12"])
    assert "bandwidth=12.0 kbps is not offered" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["nosuchdevice", "cuda"])
def test_cli_refuses_a_device_it_cannot_use_before_writing(corpus, tmp_path, device, capsys):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    manifest, checkpoint, _ = corpus
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                str(manifest),
                str(checkpoint),
                str(tmp_path / "out"),
                "--bandwidth",
                "1.5",
                "--device",
                device,
            ]
        )
    assert exit_info.value.code == 2
    assert f"--device {device} is not usable here" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_worker_processes_write_the_same_shards(corpus, tmp_path):
    manifest, checkpoint, _ = corpus
    encode_dataset(manifest, checkpoint, tmp_path / "here", 6.0, files_per_shard=2, progress=False)
    command = [sys.executable, "-m", "encodec_train.encode_dataset", str(manifest), str(checkpoint)]
    command += [str(tmp_path / "workers"), "--bandwidth", "6", "--files-per-shard", "2"]
    subprocess.run([*command, "--workers", "2"], check=True, capture_output=True)
    for name in ("shard-000000", "shard-000001", "shard-000002"):
        here = read_code_shard(tmp_path / "here" / f"{name}.safetensors")
        there = read_code_shard(tmp_path / "workers" / f"{name}.safetensors")
        assert here[1] == there[1]
        assert all(torch.equal(a[1], b[1]) for a, b in zip(here[0], there[0], strict=True))


def test_non_causal_model_encodes_each_file_alone(corpus, tmp_path):
    manifest, _, _ = corpus
    torch.manual_seed(9)
    model = randomize_official_layout_(encodec_tiny(causal=False), seed=9)
    checkpoint = save_model(model, tmp_path / "non_causal.pt")
    paths = encode_dataset(manifest, checkpoint, tmp_path / "codes", 1.5, progress=False)
    for source, codes in read_code_shard(paths[0])[0]:
        audio = padded_audio(model, Path(source))
        with torch.no_grad():
            expected = model.encode(audio, 1.5)[0].codes
        assert_same_codes(model, audio, codes.long()[None], expected)
