"""`python -m encodec_train` as users run it: a tiny run, and a two-point sweep."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    from encodec_train.data.synth import ensure_demo_corpus

    root = tmp_path_factory.mktemp("demo_corpus")
    ensure_demo_corpus(root)
    return root


def run_cli(tmp_path: Path, corpus: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "encodec_train",
        *args,
        f"run_dir={tmp_path / 'runs'}",
        f"demo_corpus={corpus}",
        f"data.train_manifests=[{corpus / 'train.jsonl'}]",
        f"data.valid_manifests=[{corpus / 'valid.jsonl'}]",
        "data.batch_size=2",
        "data.num_workers=0",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=-1",
        "trainer.enable_progress_bar=false",
        "audio_examples_every_n_steps=0",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_cli_trains_and_prints_the_summary(tmp_path, corpus):
    result = run_cli(tmp_path, corpus, "trainer.max_steps=2", "training.log_every_n_steps=1")
    assert "=== encodec-train summary ===" in result.stdout
    assert f"checkpoint: {tmp_path / 'runs' / 'checkpoints' / 'last.ckpt'}" in result.stdout
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").exists()


def test_each_sweep_point_gets_its_own_run_directory(tmp_path, corpus):
    run_cli(tmp_path, corpus, "-m", "trainer.max_steps=1,2")
    for job, steps in enumerate((1, 2)):
        point = tmp_path / "runs" / "multirun" / str(job)
        assert f"trainer.max_steps={steps}" in (point / ".hydra" / "overrides.yaml").read_text()
        checkpoint = torch.load(point / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["global_step"] == steps
