"""The record of each start of a run: `<run_dir>/starts/<n>/` with its config, overrides
and environment (code version, package versions), enough to re-create the start.

One folder per start (like the CSV log versions), written once the start has passed its
checks and built everything, just before training: a failed start leaves no record and never
overwrites the record of the start that produced the checkpoints.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import uuid
from importlib import metadata
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf


def start_record(cfg: DictConfig) -> dict:
    """What re-creates this start: the resolved config, the command line's overrides (when
    run through Hydra's entry point) and `environment()`; the run folder and W&B keep it."""
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    return {
        "config": OmegaConf.to_container(cfg, resolve=True),
        "overrides": overrides,
        "environment": environment(),
    }


def record_start(cfg: DictConfig, record: dict) -> Path:
    """Write `record` (`start_record`) as `config.yaml`, `overrides.yaml` and
    `environment.yaml` into the run's next `starts/<n>/` folder; returns it."""
    starts = Path(cfg.run_dir) / "starts"
    starts.mkdir(parents=True, exist_ok=True)
    number = len([p for p in starts.iterdir() if p.is_dir() and p.name.isdigit()])
    folder = starts / str(number)
    folder.mkdir()
    for name, value in record.items():
        (folder / f"{name}.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(value)))
    return folder


PACKAGES = ("encodec-train", "torch", "torchaudio", "lightning", "hydra-core", "wandb", "numpy")


def environment() -> dict:
    """The code this start runs: the git commit of the package's checkout and whether its
    tree had uncommitted changes (None outside a checkout, e.g. an installed wheel), the
    Python and package versions, and the command line."""
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "git": _git_state(Path(__file__).resolve().parent),
        "python": platform.python_version(),
        "packages": versions,
        "command": sys.argv,
    }


def _git_state(folder: Path) -> dict | None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=folder, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()

    try:
        return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}
    except (OSError, subprocess.SubprocessError):
        return None


def remove_if_empty(run_dir: str | Path) -> None:
    """Remove `run_dir` when a dry run or a failed start left it empty, and the folders
    above it inside the working directory that are then empty too (Hydra creates the whole
    path, e.g. `runs/encodec_24khz`, before the start runs)."""
    path = Path(run_dir).absolute()
    cwd = Path.cwd()
    while path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        path = path.parent
        if path == cwd or not path.is_relative_to(cwd):
            break


def run_id(run_dir: str | Path) -> str | None:
    """The run's id for W&B: created once (by the main rank) in `<run_dir>/run_id` and read
    back by every restart, requeue and resume, so they all continue the same W&B run; two
    runs that share a `run_name` in different folders get different ids. None on the other
    ranks before the main rank wrote it (they log nothing)."""
    existing = read_run_id(run_dir)
    if existing is not None or rank_zero_only.rank != 0:
        return existing
    path = Path(run_dir) / "run_id"
    path.parent.mkdir(parents=True, exist_ok=True)
    identifier = uuid.uuid4().hex[:12]
    path.write_text(identifier + "\n")
    return identifier


def read_run_id(run_dir: str | Path) -> str | None:
    """The run folder's W&B run id when a start made one, else None (creates nothing)."""
    path = Path(run_dir) / "run_id"
    return path.read_text().strip() if path.exists() else None
