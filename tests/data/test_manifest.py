"""Manifest rows round-trip through JSON Lines and Arrow, and bad rows name file, line, field."""

import json
from pathlib import Path

import numpy as np
import pytest

from encodec_train.data.manifest import (
    Manifest,
    ManifestEntry,
    ManifestError,
    total_hours,
    write_manifest,
)

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
