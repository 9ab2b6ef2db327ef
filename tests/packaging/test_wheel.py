"""The built wheel trains from a folder outside the checkout (its configs travel inside it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_installed_wheel_composes_and_trains_from_another_folder(tmp_path):
    # Built from a copy, so setuptools' build/ folder never lands in the checkout.
    source = tmp_path / "source"
    shutil.copytree(
        REPO / "encodec_train",
        source / "encodec_train",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(source)],
        check=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("encodec_train-*.whl")
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), wheel],
        check=True,
        timeout=600,
    )
    job = tmp_path / "job"  # a job folder with nothing of the checkout in it
    job.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site)}

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args], cwd=job, env=env, capture_output=True, text=True, timeout=600
        )
        assert result.returncode == 0, result.stderr[-3000:]
        return result.stdout

    assert run("-c", "import encodec_train; print(encodec_train.__file__)").startswith(str(site))
    assert "encodec_tiny" in run("-m", "encodec_train", "--cfg", "job")
    output = run(
        "-m",
        "encodec_train",
        "trainer.max_steps=3",
        "trainer.enable_progress_bar=false",
        "data.num_workers=0",
        "audio_examples_every_n_steps=0",
    )
    assert "trained steps 0 -> 3 (from scratch)" in output
    assert (job / "runs" / "demo" / "checkpoints" / "last.ckpt").exists()
