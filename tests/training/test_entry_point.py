"""`python -m encodec_train` as users run it: a tiny run, and a two-point sweep."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf
from run_helpers import REPO, demo_config, fast_overrides, signal_during_training

from encodec_train.training.builder import fit


def run_cli(
    tmp_path: Path, corpus: Path, *args: str, expect_success: bool = True
) -> subprocess.CompletedProcess:
    command = [
        sys.executable,
        "-m",
        "encodec_train",
        *args,
        *fast_overrides(tmp_path / "runs", corpus),
        "data.valid_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.max_epochs=-1",
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert (result.returncode == 0) == expect_success, result.stderr[-3000:]
    return result


def test_cli_trains_and_prints_the_summary(tmp_path, corpus):
    result = run_cli(
        tmp_path,
        corpus,
        "trainer.max_steps=2",
        "training.log_every_n_steps=10",
        "checkpoint_every_n_steps=1",
    )
    assert "=== encodec-train summary ===" in result.stdout
    # None of the messages a user cannot act on that once came with every run: Lightning's
    # cloud tips, its manual-optimisation checkpoint snippet, a torch pytree deprecation and
    # the `weights_only` notice.
    for message in (
        "Tip: For seamless",
        "Using ModelCheckpoint with manual optimization",
        "LeafSpec",
        "`weights_only` was not set",
    ):
        assert message not in result.stdout + result.stderr, message
    # Fewer steps than log_every_n_steps: still a fresh run, not "already complete".
    assert "trained steps 0 -> 2 (from scratch)" in result.stdout
    assert f"checkpoint: {tmp_path / 'runs' / 'checkpoints' / 'last.ckpt'}" in result.stdout
    assert (tmp_path / "runs" / "checkpoints" / "last.ckpt").exists()
    first = (tmp_path / "runs" / "starts" / "0" / "overrides.yaml").read_text()
    assert "trainer.max_steps=2" in first
    environment = OmegaConf.load(tmp_path / "runs" / "starts" / "0" / "environment.yaml")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True)
    assert environment.git.commit == head.stdout.strip()
    assert torch.__version__.startswith(environment.packages.torch)  # local tag may be dropped

    # A start that fails its checks keeps its hands off the run's record...
    with pytest.raises(FileNotFoundError, match="nothere.th"):
        fit(
            demo_config(
                tmp_path, f"run_dir={tmp_path / 'runs'}", "init_from=nothere.th", corpus=corpus
            )
        )
    assert (tmp_path / "runs" / "starts" / "0" / "overrides.yaml").read_text() == first
    assert sorted(p.name for p in (tmp_path / "runs" / "starts").iterdir()) == ["0"]
    # ...and leaves no empty run folder behind.
    elsewhere = tmp_path / "other"
    run_cli(elsewhere, corpus, "init_from=nothere.th", expect_success=False)
    assert not (elsewhere / "runs").exists()


def test_each_sweep_point_gets_its_own_run_directory(tmp_path, corpus):
    run_cli(tmp_path, corpus, "-m", "trainer.max_steps=1,2")
    points = sorted(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    # Named from the point's overrides, without the paths and other excluded keys.
    assert [[o for o in p.name.split(",") if "max_steps" in o] for p in points] == [
        ["trainer.max_steps=1"],
        ["trainer.max_steps=2"],
    ]
    assert "run_dir" not in points[0].name and "demo_corpus" not in points[0].name
    for steps, point in zip((1, 2), points, strict=True):
        overrides = (point / "starts" / "0" / "overrides.yaml").read_text()
        assert f"trainer.max_steps={steps}" in overrides
        checkpoint = torch.load(point / "checkpoints" / "last.ckpt", weights_only=True)
        assert checkpoint["global_step"] == steps
    assert (points[0] / "run_id").read_text() != (points[1] / "run_id").read_text()


def test_sigterm_finishes_the_step_writes_last_ckpt_and_the_same_command_resumes(tmp_path, corpus):
    """A scheduler's SIGTERM: the run ends cleanly with a checkpoint of the last finished
    step, and the identical command continues from it."""
    args = [
        sys.executable,
        "-m",
        "encodec_train",
        "trainer.max_steps=1000",
        "trainer.max_epochs=-1",
        *fast_overrides(tmp_path / "runs", corpus),
    ]
    returncode, output = signal_during_training(args, signal.SIGTERM)
    assert returncode == 0, output[-3000:]
    assert "stopped by SIGTERM" in output
    last = tmp_path / "runs" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert 1 <= stopped_at < 1000

    # The same run folder and overrides, in-process: it continues from the checkpoint.
    module, trainer, _ = fit(
        demo_config(
            tmp_path,
            f"run_dir={tmp_path / 'runs'}",
            f"trainer.max_steps={stopped_at + 1}",
            "trainer.max_epochs=-1",
            corpus=corpus,
        )
    )
    assert (module.start_step, trainer.global_step) == (stopped_at, stopped_at + 1)


def test_the_encodec_train_console_script_finds_the_packaged_configs(tmp_path, monkeypatch, capsys):
    # The `encodec-train` script (pyproject's [project.scripts]) imports main() from
    # encodec_train.__main__, so Hydra loads the configs as the package `encodec_train.conf`,
    # not from a file path as under `python -m`; run from a folder outside the checkout.
    from encodec_train.__main__ import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["encodec-train", "--cfg", "job", "run_name=console"])
    try:
        main()
    finally:
        HydraConfig.instance().cfg = None  # what main() leaves set, for the tests after it
    assert OmegaConf.create(capsys.readouterr().out).run_name == "console"
