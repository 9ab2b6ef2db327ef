"""Building manifests from audio trees and validating them against the files (manifest_cli)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fake_corpora import FakeCorpus

from encodec_train.data import manifest_cli
from encodec_train.data.audio_probe import PROBLEMS
from encodec_train.data.manifest import Manifest, ManifestEntry, write_manifest
from encodec_train.data.manifest_cli import build_manifest, validate_manifest

NO_PROBLEMS = dict.fromkeys(PROBLEMS, 0)


def sound_folder(root: Path) -> FakeCorpus:
    """Good files in three formats, plus one empty, one zero-frame and one corrupt file."""
    corpus = FakeCorpus(root)
    corpus.audio("a/speech.wav", 1.0, 16000, "general", "mine")
    corpus.audio("a/b/stereo.flac", 0.5, 44100, "general", "mine", channels=2)
    corpus.audio("clip.MP3", 0.25, 48000, "general", "mine")
    corpus.empty("empty.wav")
    soundfile.write(root / "no_frames.wav", np.zeros((0, 1)), 16000)
    corpus.skipped["empty"] += 1
    corpus.corrupt("broken.flac")
    (root / "notes.txt").write_text("not audio")
    return corpus


def test_build_manifest_reads_headers_and_skips_bad_files(tmp_path: Path) -> None:
    corpus = sound_folder(tmp_path / "sounds")
    out = tmp_path / "m.jsonl"
    report = build_manifest(corpus.root, "general", "mine", out, num_workers=2)

    rows = {
        e.path: (e.duration, e.sample_rate, e.channels, e.domain, e.dataset)
        for e in Manifest.load(out)
    }
    assert rows == corpus.rows
    assert report.skipped_counts() == NO_PROBLEMS | {"empty": 2, "unreadable": 1}
    problems = {Path(p.path).name: p.detail for p in report.skipped}
    assert problems["empty.wav"] == "0 bytes"
    assert problems["no_frames.wav"] == "header has 0 frames"
    assert problems["broken.flac"].startswith("Error opening")
    summary = report.summary()
    assert f"wrote 3 rows to {out}" in summary
    assert "skipped 3 files: 2 empty, 1 unreadable" in summary
    assert report.arrow is None and not (tmp_path / "m.arrow").exists()


def test_build_manifest_relative_paths_and_arrow_copy(tmp_path: Path, monkeypatch) -> None:
    corpus = sound_folder(tmp_path / "sounds")
    monkeypatch.setattr(manifest_cli, "ARROW_MIN_ROWS", 3)  # 3 rows count as "large"
    out = tmp_path / "manifests" / "m.jsonl"
    report = build_manifest(corpus.root, "general", "mine", out, num_workers=1, relative=True)

    assert report.arrow == tmp_path / "manifests" / "m.arrow"
    first = json.loads(out.read_text().splitlines()[0])
    assert first["path"] == "../sounds/a/b/stereo.flac"  # sorted: a/b/... before a/speech
    jsonl, arrow = Manifest.load(out), Manifest.load(report.arrow)
    assert list(jsonl) == list(arrow)
    assert sorted(jsonl.column("path")) == sorted(corpus.rows)


def test_build_manifest_refuses_useless_input(tmp_path: Path) -> None:
    corpus = FakeCorpus(tmp_path / "bad")
    corpus.corrupt("x.wav")
    with pytest.raises(
        ValueError, match=r"no usable audio for .*m\.jsonl: 1 candidate files, 1 unreadable"
    ):
        build_manifest(corpus.root, "music", "d", tmp_path / "m.jsonl")
    with pytest.raises(ValueError, match="domain 'noise' is not one of"):
        build_manifest(corpus.root, "noise", "d", tmp_path / "m.jsonl")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_manifest(tmp_path / "nowhere", "music", "d", tmp_path / "m.jsonl")


def test_validate_finds_missing_empty_and_mismatched_files(tmp_path: Path, capsys) -> None:
    corpus = FakeCorpus(tmp_path / "sounds")
    one = corpus.audio("one.wav", 1.0, 16000, "speech", "d")
    two = corpus.audio("two.wav", 0.5, 16000, "speech", "d")
    three = corpus.audio("three.flac", 2.0, 44100, "music", "d", channels=2)
    four = corpus.audio("four.wav", 0.25, 16000, "general", "d")
    rows = [
        ManifestEntry(str(one), 1.0, 16000, 1, "speech", "d"),
        ManifestEntry(str(two), 0.5, 16000, 1, "speech", "d"),
        ManifestEntry(str(three), 2.0, 44100, 2, "music", "d"),
        ManifestEntry(str(four), 0.25, 16000, 1, "general", "d"),
    ]
    out = write_manifest(rows, tmp_path / "m.jsonl")
    assert manifest_cli.main(["validate", str(out), "--workers", "1"]) == 0
    rows[2] = ManifestEntry(str(three), 2.0, 48000, 2, "music", "d")  # the file is 44.1 kHz
    write_manifest(rows, out)
    two.unlink()
    four.write_bytes(b"")

    report = validate_manifest(out, num_workers=2)
    assert not report.ok
    assert [(Path(p.path).name, p.problem) for p in report.problems] == [
        ("two.wav", "missing"),
        ("four.wav", "empty"),
    ]
    assert len(report.mismatched) == 1 and "48000 Hz" in report.mismatched[0]
    assert report.sample_rates == {16000: 3, 48000: 1}
    assert report.hours == pytest.approx(
        {"speech": 1.5 / 3600, "general": 0.25 / 3600, "music": 2 / 3600}
    )
    assert manifest_cli.main(["validate", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "missing files: 1" in printed and "empty files: 1" in printed
    assert "16000 Hz: 3, 48000 Hz: 1" in printed and printed.rstrip().endswith("PROBLEMS FOUND")


def test_cli_build_runs_as_a_module(tmp_path: Path) -> None:
    corpus = FakeCorpus(tmp_path / "sounds")
    corpus.audio("x.flac", 0.5, 24000, "music", "tunes")
    out = tmp_path / "tunes.jsonl"
    command = [sys.executable, "-m", "encodec_train.data.manifest_cli", "build"]
    command += ["--root", str(corpus.root), "--domain", "music", "--dataset", "tunes"]
    subprocess.run([*command, "--out", str(out), "--arrow"], check=True, capture_output=True)
    assert Manifest.load(tmp_path / "tunes.arrow")[0] == ManifestEntry(
        str(corpus.root / "x.flac"), 0.5, 24000, 1, "music", "tunes"
    )


# --- files whose header promises more than they hold ---


def damaged_flacs(root: Path) -> dict[str, Path]:
    """A good 2 s FLAC at 16 kHz (8 blocks of 4096 frames); its first 300 bytes, whose header
    still promises 2 s; and a copy with 200 bytes of noise in its middle."""
    root.mkdir(parents=True, exist_ok=True)
    rate = 16000
    good = root / "good.flac"
    soundfile.write(good, 0.3 * np.sin(2 * np.pi * 440 * np.arange(2 * rate) / rate), rate)
    data = good.read_bytes()
    truncated = root / "truncated.flac"
    truncated.write_bytes(data[:300])
    middle = len(data) // 2
    noise = np.random.default_rng(0).integers(0, 256, 200, dtype=np.uint8).tobytes()
    damaged = root / "damaged.flac"
    damaged.write_bytes(data[:middle] + noise + data[middle + 200 :])
    return {"good": good, "truncated": truncated, "damaged": damaged}


def test_build_leaves_out_a_truncated_flac_whose_header_looks_whole(tmp_path: Path) -> None:
    files = damaged_flacs(tmp_path / "sounds")
    assert soundfile.info(files["truncated"]).duration == 2.0  # what a header-only read sees
    headers_only = build_manifest(
        tmp_path / "sounds", "music", "d", tmp_path / "h.jsonl", num_workers=1, tail_check=False
    )
    assert len(headers_only.entries) == 3

    report = build_manifest(tmp_path / "sounds", "music", "d", tmp_path / "m.jsonl", num_workers=2)
    # The damage inside one file leaves its end readable: only a full decode finds it.
    assert sorted(Path(e.path).name for e in Manifest.load(tmp_path / "m.jsonl")) == [
        "damaged.flac",
        "good.flac",
    ]
    assert report.skipped_counts() == NO_PROBLEMS | {"truncated": 1}
    summary = report.summary()
    assert "skipped 1 files: 1 truncated" in summary
    assert f"truncated: {files['truncated']}: the header gives 32000 frames" in summary


def test_validate_decode_reports_truncated_and_undecodable_files(tmp_path: Path, capsys) -> None:
    files = damaged_flacs(tmp_path / "sounds")
    rows = [ManifestEntry(str(path), 2.0, 16000, 1, "music", "d") for path in files.values()]
    out = write_manifest(rows, tmp_path / "m.jsonl")

    assert manifest_cli.main(["validate", str(out), "--decode", "--workers", "2"]) == 1
    printed = capsys.readouterr()
    assert f"truncated: {files['truncated']}: 0 of the 32000 frames" in printed.out
    assert f"undecodable: {files['damaged']}: decoding fails after " in printed.out
    assert str(files["good"]) not in printed.out
    assert "truncated files: 1" in printed.out and "undecodable files: 1" in printed.out
    assert "3/3 files" in printed.err.splitlines()[-1]  # the progress bar, on stderr

    # Without --decode, validate reads each file's end: it finds the lost end only.
    report = validate_manifest(out, num_workers=1)
    assert [(Path(p.path).name, p.problem) for p in report.problems] == [
        ("truncated.flac", "truncated")
    ]
    good = write_manifest(rows[:1], tmp_path / "good.jsonl")
    assert manifest_cli.main(["validate", str(good), "--decode", "--workers", "1"]) == 0


# --- errors about the user's paths: one line, no traceback ---


@pytest.mark.parametrize(
    ("case", "advice"),
    [
        ("missing folder", "check the path"),
        ("empty folder", "give the folder that holds the audio"),
        ("file as folder", "give the folder that holds the audio"),
        ("only bad files", "1 unreadable; the first: "),
        ("missing manifest", "write it with a recipe"),
        ("folder as manifest", "give a .jsonl file or the .arrow directory"),
    ],
)
def test_cli_errors_are_one_line_naming_the_path(tmp_path: Path, capsys, case, advice) -> None:
    (tmp_path / "empty").mkdir()
    corpus = FakeCorpus(tmp_path / "bad")
    bad = corpus.corrupt("x.wav")
    build = ["build", "--domain", "music", "--dataset", "d", "--out", str(tmp_path / "m.jsonl")]
    argv, path = {
        "missing folder": ([*build, "--root", str(tmp_path / "nowhere")], tmp_path / "nowhere"),
        "empty folder": ([*build, "--root", str(tmp_path / "empty")], tmp_path / "empty"),
        "file as folder": ([*build, "--root", str(bad)], bad),
        "only bad files": ([*build, "--root", str(corpus.root)], bad),
        "missing manifest": (["validate", str(tmp_path / "no.jsonl")], tmp_path / "no.jsonl"),
        "folder as manifest": (["validate", str(tmp_path / "empty")], tmp_path / "empty"),
    }[case]
    assert manifest_cli.main(argv) == 2
    printed = capsys.readouterr()
    assert printed.out == ""
    assert printed.err.count("\n") == 1 and printed.err.endswith("\n")
    assert f"{argv[0]}: error: " in printed.err
    assert str(path) in printed.err and advice in printed.err
    assert not (tmp_path / "m.jsonl").exists()


def test_cli_module_exits_with_status_2_and_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    command = [sys.executable, "-m", "encodec_train.data.manifest_cli", "build", "--root"]
    command += [str(tmp_path / "empty"), "--domain", "music", "--dataset", "d"]
    result = subprocess.run(
        [*command, "--out", str(tmp_path / "m.jsonl")], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and str(tmp_path / "empty") in result.stderr
    assert "Traceback" not in result.stderr


def test_min_sample_rate_keeps_only_files_at_that_rate_or_above(tmp_path: Path) -> None:
    """The 48 kHz model trains on 48 kHz music only (paper §4.2)."""
    corpus = FakeCorpus(tmp_path / "music")
    corpus.audio("cd.wav", 0.25, 44100, "music", "jamendo")
    corpus.audio("studio.flac", 0.25, 48000, "music", "jamendo", channels=2)
    corpus.audio("hires.wav", 0.25, 96000, "music", "jamendo")
    out = tmp_path / "jamendo_48khz.jsonl"
    report = build_manifest(corpus.root, "music", "jamendo", out, min_sample_rate=48000)
    assert sorted(e.sample_rate for e in Manifest.load(out)) == [48000, 96000]
    assert report.skipped_counts()["low_sample_rate"] == 1
    (low,) = [p for p in report.skipped if p.problem == "low_sample_rate"]
    assert low.path.endswith("cd.wav") and "44100 Hz < 48000 Hz" in low.detail
