"""The evaluate command on a synthesised manifest with tiny models: its files hold the numbers
the metric functions give when called directly, per file, per category and in the report."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hydra import compose, initialize_config_dir

from encodec_train import evaluate
from encodec_train.convert import export_hf, export_official
from encodec_train.data.synth import music_like, speech_like
from encodec_train.evaluate import run
from encodec_train.evaluation.metrics import compute
from encodec_train.evaluation.systems import CodecSystem, find_checkpoints, load_codec
from encodec_train.model import EncodecModel
from encodec_train.model.checkpoint import save_model

CONF_DIR = Path(__file__).resolve().parents[2] / "encodec_train" / "conf"
METRICS = ["si_snr", "pesq"]
TINY = dict(
    target_bandwidths=[1.5, 3.0, 6.0],
    n_filters=8,
    dimension=64,
    lstm_layers=1,
    codebook_size=32,
    kmeans_iters=5,
    init="unit_norm",
)


def tiny_run(root: Path, seed: int, audio: torch.Tensor) -> Path:
    """A run folder whose checkpoints/last.ckpt is a tiny model with k-means codebooks."""
    torch.manual_seed(seed)
    model = EncodecModel(**TINY).train()
    model(audio, 6.0)  # k-means initialises the codebooks on this audio
    save_model(model.eval(), root / "checkpoints" / "last.ckpt")
    return root


@pytest.fixture(scope="module")
def test_set(tmp_path_factory) -> Path:
    """Two speech files (one at 16 kHz, resampled by the evaluation) and one music file."""
    root = tmp_path_factory.mktemp("test_set")
    rng = np.random.default_rng(0)
    files = [
        ("speech_a.wav", speech_like(1.0, 24000, 120.0, rng), 24000, "speech", "clean_speech"),
        ("speech_b.wav", speech_like(1.0, 16000, 180.0, rng), 16000, "speech", "clean_speech"),
        ("music_a.wav", music_like(1.0, 24000, rng).mean(0), 24000, "music", "music"),
    ]
    rows = []
    for name, audio, rate, domain, dataset in files:
        sf.write(root / name, 0.3 * audio / np.abs(audio).max(), rate, subtype="FLOAT")
        row = dict(path=name, duration=1.0, sample_rate=rate, channels=1, domain=domain)
        rows.append(json.dumps({**row, "dataset": dataset}) + "\n")
    (root / "test.jsonl").write_text("".join(rows))
    return root / "test.jsonl"


def test_report_numbers_are_the_metric_functions_called_directly(tmp_path, test_set):
    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    tiny_run(tmp_path / "tiny", 0, clip[None, None])
    out = tmp_path / "report"
    overrides = [
        f"checkpoint={tmp_path / 'tiny'}",
        f"manifest={test_set}",
        f"metrics=[{','.join(METRICS)}]",
        "bandwidths=[1.5,6]",
        "~baselines.opus",
        "workers=0",
        "examples=1",
        f"output_dir={out}",
        "progress=false",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        report = run(compose("evaluate", overrides=overrides)).read_text()

    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 2  # files × bandwidths
    model = load_codec(tmp_path / "tiny" / "checkpoints" / "last.ckpt")
    for row in rows:
        reference, rate = sf.read(test_set.parent / row["file"], dtype="float32", always_2d=True)
        reference = torch.from_numpy(reference.T.copy())
        decoded = CodecSystem(model, float(row["setting"]), row["system"])(reference, rate).audio
        for name in METRICS:
            if row["domain"] == "music" and name == "pesq":
                assert row[name] == "" and f"{name}: " in row["not_applicable"]
                continue
            expected = compute(name, reference, decoded, rate, row["domain"])
            assert float(row[name]) == pytest.approx(expected, rel=1e-9, abs=1e-12)
        assert float(row["kbps"]) == float(row["setting"])  # 5 bits × 75 frames/s × codebooks

    # The report's cells are the means of those per-file values.
    for system in ("tiny",):
        for setting in ("1.5", "6"):
            group = [
                r for r in rows if r["system"] == system and float(r["setting"]) == float(setting)
            ]
        si_snr = [float(r["si_snr"]) for r in group]
        speech = [float(r["si_snr"]) for r in group if r["category"] == "clean_speech"]
        pesq = [float(r["pesq"]) for r in group if r["pesq"]]
        assert (
            f"| tiny | {setting} | {float(setting):.2f} | {np.mean(si_snr):.3f} | "
            f"{np.mean(speech):.3f} | {float(group[2]['si_snr']):.3f} |" in report
        )
        assert f"| {np.mean(pesq):.3f} | {np.mean(pesq):.3f} | n/a |" in report
    for name in METRICS:
        assert (out / "plots" / f"{name}.png").stat().st_size > 0
    assert (out / "examples" / "tiny_1.5kbps" / "music_a.wav").is_file()
    assert (out / "examples" / "reference" / "speech_a.wav").is_file()


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg missing: apt-get install ffmpeg")
def test_the_command_compares_a_run_with_opus_in_one_table_using_worker_processes(
    tmp_path, test_set
):
    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    run_dir = tiny_run(tmp_path / "tiny", 0, clip[None, None])
    out = tmp_path / "report"
    command = [
        sys.executable,
        "-m",
        "encodec_train.evaluate",
        f"checkpoint={run_dir}",
        f"manifest={test_set}",
        "bandwidths=[3,6]",
        # Not ViSQOL: on a fresh install its first call compiles for ~20 s in each worker.
        "metrics=[si_snr,pesq]",
        "workers=2",
        f"output_dir={out}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "evaluate: 100%" in result.stderr  # the progress bar
    report = (out / "report.md").read_text()
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert {(r["system"], float(r["setting"])) for r in rows} == {
        ("tiny", 3.0),
        ("tiny", 6.0),
        ("opus", 6.0),
    }
    speech = [r for r in rows if r["domain"] == "speech"]
    assert len(speech) == 6 and all(float(r["pesq"]) >= 1.0 for r in speech)  # in the workers
    opus = [float(r["kbps"]) for r in rows if r["system"] == "opus"]
    assert np.mean(opus) == pytest.approx(6.0, rel=0.05)
    assert "| opus | 3 | — | not evaluated: opus cannot encode below 6 kbps |" in report
    assert (out / "plots" / "pesq.png").is_file()


def test_a_hugging_face_export_evaluates_as_the_checkpoint(tmp_path, test_set):
    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    run_dir = tiny_run(tmp_path / "tiny", 0, clip[None, None])
    ours = load_codec(run_dir / "checkpoints" / "last.ckpt")
    hugging_face = export_hf(ours, tmp_path / "tiny_hf")
    assert find_checkpoints(run_dir) == [("tiny", run_dir / "checkpoints" / "last.ckpt")]
    assert find_checkpoints(hugging_face) == [("tiny_hf", hugging_face)]
    expected = CodecSystem(ours, 3.0, "ours")(clip[None], 24000).audio
    decoded = CodecSystem(load_codec(hugging_face), 3.0, "hf")(clip[None], 24000).audio
    torch.testing.assert_close(decoded, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_an_official_state_dict_evaluates_as_the_model_it_came_from(tmp_path, test_set):
    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    torch.manual_seed(0)
    model = EncodecModel().train()  # the official 24 kHz shape (a .th file has no config)
    model(clip[None, None], 1.5)  # k-means codebooks
    official = export_official(model.eval(), tmp_path / "encodec_24khz.th")
    assert find_checkpoints(official) == [("encodec_24khz", official)]
    expected = CodecSystem(model, 1.5, "ours")(clip[None], 24000).audio
    decoded = CodecSystem(load_codec(official), 1.5, "official")(clip[None], 24000).audio
    torch.testing.assert_close(decoded, expected, rtol=1e-4, atol=1e-5)


def test_a_sweep_skips_runs_that_hold_no_codec_but_a_named_one_fails(tmp_path, test_set):
    from encodec_train.evaluation.runner import build_systems
    from encodec_train.model.checkpoint import CheckpointMismatchError

    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    tiny_run(tmp_path / "sweep" / "codec", 0, clip[None, None])
    other = tmp_path / "sweep" / "entropy_model" / "checkpoints" / "last.ckpt"
    other.parent.mkdir(parents=True)
    torch.save({"state_dict": {}}, other)
    systems, skipped = build_systems([tmp_path / "sweep"], None, [])
    assert [(s.label, s.setting) for s in systems] == [("sweep/codec", b) for b in (1.5, 3.0, 6.0)]
    assert [s.label for s in skipped] == ["sweep/entropy_model"]
    with pytest.raises(CheckpointMismatchError, match="not an encodec-train checkpoint"):
        build_systems([other.parent.parent], None, [])


def test_user_errors_are_one_line_and_bugs_keep_their_traceback(
    tmp_path, test_set, monkeypatch, capsys
):
    clip = torch.from_numpy(sf.read(test_set.parent / "speech_a.wav", dtype="float32")[0])
    run_dir = tiny_run(tmp_path / "tiny", 0, clip[None, None])
    common = ["~baselines.opus", "workers=0", "progress=false", f"output_dir={tmp_path / 'out'}"]
    absent = tmp_path / "absent.ckpt"
    unknown_metric = [f"checkpoint={run_dir}", f"manifest={test_set}", "metrics=[si_snr,snr]"]
    for overrides, message in [
        ([f"checkpoint={absent}"], f"error: checkpoint {absent}: no such file or directory"),
        (unknown_metric, "error: unknown metric 'snr'; known: si_snr, mel_distance,"),
        (["bandwidths=[1.5,six]"], "error: bandwidths=[1.5, 'six']: give a list of kbps"),
        (["bandwidths=6"], "error: bandwidths=6: give a list of kbps, e.g. [1.5,6]"),
        (
            [f"checkpoint={run_dir}", f"manifest={tmp_path / 'test.jsonl'}"],
            f"error: manifest={tmp_path / 'test.jsonl'} does not exist; build a test manifest "
            "with `python recipes/test_sets.py build`",
        ),
    ]:
        monkeypatch.setattr(sys, "argv", ["evaluate", *overrides, *common])
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main()
        err = capsys.readouterr().err
        assert exit_info.value.code != 0
        assert len(err.splitlines()) == 1 and err.startswith(message), err

    def bug(cfg):
        raise RuntimeError("a bug")

    monkeypatch.setattr(evaluate, "run", bug)
    monkeypatch.setattr(sys, "argv", ["evaluate", *common])
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main()
    err = capsys.readouterr().err
    assert exit_info.value.code != 0
    assert "Traceback" in err and "RuntimeError: a bug" in err
