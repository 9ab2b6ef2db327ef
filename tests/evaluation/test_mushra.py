"""MUSHRA: the paper's annotator filtering on a hand-made results table, confidence
intervals by hand, and a built kit with a hidden reference, a 3.5 kHz anchor and matched
loudness."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio.functional as AF
import yaml

from encodec_train.evaluation.mushra.analyze import analyze, dropped_annotators, read_ratings
from encodec_train.evaluation.mushra.build import build_test
from encodec_train.mushra import main

# Ten trials per annotator. "ok" rates the reference 100 and the anchor 20; "ref20" rates the
# reference 85 in 2 of 10 trials (20%: at least 20%, dropped), "ref10" in 1 of 10 (kept);
# "anchor60" rates the anchor 90 in 6 of 10 trials (more than 50%: dropped), "anchor50" in
# 5 of 10 (not more than 50%: kept).
LOW_REFERENCE = {"ok": 0, "ref20": 2, "ref10": 1, "anchor60": 0, "anchor50": 0}
HIGH_ANCHOR = {"ok": 0, "ref20": 0, "ref10": 0, "anchor60": 6, "anchor50": 5}


def codec_score(annotator: str, trial: int) -> float:
    return 50 + 3 * trial + 7 * sorted(LOW_REFERENCE).index(annotator)


def write_results(path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            [
                "session_test_id",
                "session_uuid",
                "trial_id",
                "rating_stimulus",
                "rating_score",
                "rating_time",
            ]
        )
        for who in LOW_REFERENCE:
            for trial in range(10):
                reference = 85 if trial < LOW_REFERENCE[who] else 100
                anchor = 90 if trial < HIGH_ANCHOR[who] else 20
                for stimulus, score in (
                    ("reference", reference),
                    ("anchor35", anchor),
                    ("codec", codec_score(who, trial)),
                ):
                    writer.writerow(["t", who, f"item{trial}", stimulus, score, 1000])


def test_the_paper_filtering_drops_exactly_the_annotators_it_must(tmp_path):
    write_results(tmp_path / "mushra.csv")
    dropped = dropped_annotators(read_ratings(tmp_path / "mushra.csv"))
    assert set(dropped) == {"ref20", "anchor60"}
    assert "reference below 90 in 20%" in dropped["ref20"]
    assert "anchor above 80 in 60%" in dropped["anchor60"]


def test_scores_are_the_means_and_t_intervals_of_the_kept_ratings(tmp_path):
    write_results(tmp_path / "mushra.csv")
    summary = main(["analyze", str(tmp_path / "mushra.csv"), "--out", str(tmp_path)])
    assert summary == 0
    rows = {r["system"]: r for r in csv.DictReader(open(tmp_path / "mushra_scores.csv"))}
    kept = ["ok", "ref10", "anchor50"]
    values = np.array([codec_score(who, t) for who in kept for t in range(10)])
    # Student's t quantile for 29 degrees of freedom at 0.975 (tables: 2.0452).
    half = 2.045229642 * values.std(ddof=1) / math.sqrt(len(values))
    assert float(rows["codec"]["mean"]) == pytest.approx(values.mean())
    assert float(rows["codec"]["ci95"]) == pytest.approx(half, rel=1e-6)
    assert int(rows["codec"]["ratings"]) == 30
    reference = [85] + [100] * 29  # "ref10"'s one low rating stays
    assert float(rows["reference"]["mean"]) == pytest.approx(np.mean(reference))
    assert (tmp_path / "mushra_scores.png").stat().st_size > 0
    text = analyze(tmp_path / "mushra.csv", tmp_path)
    assert "Annotators: 5, kept 3." in text and "| codec |" in text


def test_the_kit_has_a_hidden_reference_a_low_anchor_and_matched_loudness(tmp_path, speech):
    rate = 16000
    folders = {name: tmp_path / name for name in ("items", "noisy")}
    rows = []
    for index in range(3):
        clip = speech[:, index * 8000 : index * 8000 + 16000]
        for name, folder in folders.items():
            folder.mkdir(exist_ok=True)
            # Broadband items, so the anchor's low-pass has something to remove.
            audio = clip + (0.05 if name == "noisy" else 0.02) * torch.randn_like(clip)
            sf.write(folder / f"item_{index}.wav", audio[0].numpy(), rate, subtype="FLOAT")
        rows.append(
            f'{{"path": "item_{index}.wav", "duration": 1.0, "sample_rate": {rate}, '
            '"channels": 1, "domain": "speech", "dataset": "clean_speech"}\n'
        )
    (folders["items"] / "test.jsonl").write_text("".join(rows))
    config = build_test(
        folders["items"] / "test.jsonl", [f"noisy={folders['noisy']}"], tmp_path / "kit", seed=3
    )
    pages = yaml.safe_load(config.read_text())["pages"]
    assert pages[1][0] == "random"
    trials = pages[1][1:]
    assert sorted(p["id"] for p in trials) == ["item_0", "item_1", "item_2"]
    again = build_test(
        folders["items"] / "test.jsonl", [f"noisy={folders['noisy']}"], tmp_path / "again", seed=3
    )
    assert [p["id"] for p in yaml.safe_load(again.read_text())["pages"][1][1:]] == [
        p["id"] for p in trials
    ]
    for page in trials:
        assert set(page["stimuli"]) == {"noisy", "anchor35"}
        paths = [page["reference"], *page["stimuli"].values()]
        clips = {
            p: torch.from_numpy(sf.read(tmp_path / "kit" / p, dtype="float32")[0])[None]
            for p in paths
        }
        for audio in clips.values():
            assert float(AF.loudness(audio, rate)) == pytest.approx(-23.0, abs=0.1)

        def share_above_3700_hz(audio: torch.Tensor) -> float:
            spectrum = torch.fft.rfft(audio[0].double()).abs().pow(2)
            return float(spectrum[int(3700 / rate * audio.shape[-1]) :].sum() / spectrum.sum())

        assert share_above_3700_hz(clips[page["reference"]]) > 0.01
        assert share_above_3700_hz(clips[page["stimuli"]["anchor35"]]) < 1e-4
