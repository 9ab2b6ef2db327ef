"""Manifest rows round-trip through JSON Lines and Arrow, and bad rows name file, line, field."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile
from fake_corpora import FakeCorpus

from encodec_train.data import manifest_cli
from encodec_train.data.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    total_hours,
    write_manifest,
)
from encodec_train.data.manifest_cli import build_manifest, validate_manifest

ENTRIES = [
    ManifestEntry("a/one.wav", 2.5, 24000, 1, "speech", "dns4"),
    ManifestEntry("/abs/two.flac", 10.0, 44100, 2, "music", "jamendo", weight=0.5),
    ManifestEntry("three.wav", 1.25, 16000, 1, "general", "fsd50k"),
]


def write_lines(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


GOOD_ROW = {
    "path": "x.wav",
    "duration": 1.0,
    "sample_rate": 24000,
    "channels": 1,
    "domain": "speech",
    "dataset": "d",
}


@pytest.mark.parametrize("source", ["m.jsonl", "m.arrow"])
def test_round_trip_resolves_relative_paths(tmp_path: Path, source: str) -> None:
    write_manifest(ENTRIES, tmp_path / "m.jsonl", arrow=True)
    manifest = Manifest.load(tmp_path / source)

    assert len(manifest) == 3
    assert manifest[0] == ManifestEntry(f"{tmp_path}/a/one.wav", 2.5, 24000, 1, "speech", "dns4")
    assert manifest[1].path == "/abs/two.flac" and manifest[1].weight == 0.5
    assert manifest[-1].path == f"{tmp_path}/three.wav"
    assert list(manifest.column("domain")) == ["speech", "music", "general"]
    np.testing.assert_array_equal(manifest.column("duration"), [2.5, 10.0, 1.25])
    np.testing.assert_array_equal(manifest.column("channels"), [1, 2, 1])
    assert list(manifest.column("path")) == [e.path for e in manifest]
    # 2.5 s of speech, 10 s of music, 1.25 s of general, in hours.
    assert total_hours(manifest) == pytest.approx(
        {"speech": 2.5 / 3600, "general": 1.25 / 3600, "music": 10 / 3600}
    )


def test_weight_defaults_to_one_and_fields_are_python_types(tmp_path: Path) -> None:
    manifest = Manifest.load(write_lines(tmp_path / "m.jsonl", [GOOD_ROW, GOOD_ROW]))
    entry = manifest[1]
    assert entry.weight == 1.0
    assert type(entry.sample_rate) is int and type(entry.duration) is float
    with pytest.raises(IndexError, match="row 2 out of range"):
        manifest[2]
    with pytest.raises(KeyError, match="'speaker'"):
        manifest.column("speaker")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"domain": "speach"}, "field 'domain': 'speach' must be one of speech, general, music"),
        ({"duration": 0.0}, "field 'duration': 0.0 must be a positive"),
        ({"sample_rate": 24000.0}, "field 'sample_rate': expected int, got 24000.0"),
        ({"channels": True}, "field 'channels': expected int, got True"),
        ({"weight": -1}, "field 'weight': -1.0 must be positive"),
        ({"wieght": 2.0}, "unknown field(s) 'wieght'"),
        ({"dataset": None}, "field 'dataset': expected str, got None"),
    ],
)
def test_bad_row_names_file_line_and_field(tmp_path: Path, change: dict, message: str) -> None:
    path = write_lines(tmp_path / "m.jsonl", [GOOD_ROW, GOOD_ROW, {**GOOD_ROW, **change}])
    with pytest.raises(ManifestError) as error:
        Manifest.load(path)
    assert str(error.value).startswith(f"{path}:3: ")
    assert message in str(error.value)


def test_missing_field_and_bad_json_are_reported(tmp_path: Path) -> None:
    row = {k: v for k, v in GOOD_ROW.items() if k != "channels"}
    path = write_lines(tmp_path / "m.jsonl", [row])
    with pytest.raises(ManifestError, match=r"m\.jsonl:1: missing field\(s\) 'channels'"):
        Manifest.load(path)
    path.write_text(json.dumps(GOOD_ROW) + "\n\n{not json\n")
    with pytest.raises(ManifestError, match=r"m\.jsonl:3: invalid JSON"):
        Manifest.load(path)
    with pytest.raises(FileNotFoundError, match="nothing.jsonl"):
        Manifest.load(tmp_path / "nothing.jsonl")


def test_write_refuses_bad_entries(tmp_path: Path) -> None:
    bad = ManifestEntry("x.wav", 1.0, 24000, 1, "noise", "d")
    with pytest.raises(ManifestError, match=r"entry 1: field 'domain': 'noise'"):
        write_manifest([ENTRIES[0], bad], tmp_path / "m.jsonl")
    assert not (tmp_path / "m.jsonl").exists()


def test_arrow_rows_are_validated(tmp_path: Path) -> None:
    import datasets

    rows = [GOOD_ROW, {**GOOD_ROW, "domain": "noise"}]
    data = {name: [row[name] for row in rows] for name in GOOD_ROW}
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "bad.arrow"))
    with pytest.raises(ManifestError, match=r"bad\.arrow: row 2: field 'domain': 'noise'"):
        Manifest.load(tmp_path / "bad.arrow")

    data["channels"] = ["1", "1"]
    datasets.Dataset.from_dict(data).save_to_disk(str(tmp_path / "typed.arrow"))
    with pytest.raises(ManifestError, match="column 'channels' has type string"):
        Manifest.load(tmp_path / "typed.arrow")


# --- building and validating manifests from audio on disk (manifest_cli) ---


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
    assert report.skipped_counts() == {"missing": 0, "empty": 2, "unreadable": 1}
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
