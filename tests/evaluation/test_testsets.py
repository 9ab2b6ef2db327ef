"""Held-out splits keep whole groups out of training; test sets are fixed, seeded and level."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from encodec_train.data.manifest import Manifest
from encodec_train.evaluation.testsets import (
    Category,
    SegmentOptions,
    build_test_set,
    group_of,
    split_held_out,
)


def write_corpus(root, domain, count, seconds=1.5, rate=16000, speakers=4):
    rows = []
    for i in range(count):
        path = root / f"spk{i % speakers}" / f"{domain}_{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        tone = np.sin(2 * np.pi * (200 + 50 * i) * np.arange(int(seconds * rate)) / rate)
        sf.write(path, 0.3 * tone, rate)
        rows.append(
            {
                "path": str(path.relative_to(root)),
                "duration": seconds,
                "sample_rate": rate,
                "channels": 1,
                "domain": domain,
                "dataset": domain,
            }
        )
    manifest = root / f"{domain}.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def test_split_holds_out_whole_groups_and_the_training_manifest_loses_them(tmp_path):
    manifest = write_corpus(tmp_path, "speech", 12, speakers=6)
    train, heldout, groups = split_held_out(manifest, fraction=0.3, pattern=r"(spk\d+)/")
    assert groups == 2  # ceil(0.3 × 6)
    held = {group_of(e.path, r"(spk\d+)/") for e in Manifest.load(heldout)}
    kept = {group_of(e.path, r"(spk\d+)/") for e in Manifest.load(train)}
    assert len(held) == 2 and len(kept) == 4 and not held & kept
    assert len(Manifest.load(train)) + len(Manifest.load(heldout)) == 12
    # The full list is kept, and splitting again gives the same split.
    assert len(Manifest.load(tmp_path / "speech.all.jsonl")) == 12
    split_held_out(manifest, fraction=0.3, pattern=r"(spk\d+)/")
    assert {e.path for e in Manifest.load(heldout)} == {
        e.path for e in Manifest.load(tmp_path / "speech.heldout.jsonl")
    }
    assert len(Manifest.load(train)) == 8


def test_test_set_segments_are_seeded_level_and_labelled(tmp_path):
    speech = write_corpus(tmp_path, "speech", 3)
    noise = write_corpus(tmp_path, "general", 3)
    options = SegmentOptions(sample_rate=16000, segment_seconds=1.0, per_category=3)
    categories = (
        Category("clean_speech", "speech", "speech"),
        Category("noisy_speech", "speech", "speech", noise="noise"),
    )
    sources = {"speech": [speech], "noise": [noise]}
    first = build_test_set(sources, tmp_path / "a", options, categories)
    second = build_test_set(sources, tmp_path / "b", options, categories)
    entries = list(Manifest.load(first))
    assert [e.dataset for e in entries] == ["clean_speech"] * 3 + ["noisy_speech"] * 3
    assert {e.domain for e in entries} == {"speech"}
    for entry, again in zip(entries, Manifest.load(second), strict=True):
        audio, rate = sf.read(entry.path)
        assert rate == 16000 and len(audio) == 16000
        assert 20 * np.log10(np.sqrt(np.mean(audio**2))) == pytest.approx(-20.0, abs=0.05)
        np.testing.assert_array_equal(audio, sf.read(again.path)[0])
    with pytest.raises(ValueError, match="no manifests for source 'noise'"):
        build_test_set({"speech": [speech]}, tmp_path / "c", options, categories)
    with pytest.raises(ValueError, match="no speech file of at least 2 s"):
        build_test_set(sources, tmp_path / "d", SegmentOptions(segment_seconds=2.0), categories)
