"""The record of each start of a run: `<run_dir>/starts/<n>/` with its config and overrides.

One folder per start (like the CSV log versions), written once the start has passed its
checks and built everything, just before training: a failed start leaves no record and never
overwrites the record of the start that produced the checkpoints.
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf


def record_start(cfg: DictConfig) -> Path:
    """Write `config.yaml` (as composed) and `overrides.yaml` (the command line's, when run
    through Hydra's entry point) into the run's next `starts/<n>/` folder; returns it."""
    starts = Path(cfg.run_dir) / "starts"
    starts.mkdir(parents=True, exist_ok=True)
    number = len([p for p in starts.iterdir() if p.is_dir() and p.name.isdigit()])
    folder = starts / str(number)
    folder.mkdir()
    (folder / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    (folder / "overrides.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(overrides)))
    return folder


def remove_if_empty(run_dir: str | Path) -> None:
    """Remove `run_dir` when a failed start left it empty (Hydra creates it before the
    start runs)."""
    path = Path(run_dir)
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
