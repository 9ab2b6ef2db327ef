"""`python -m encodec_train.evaluate checkpoint=... manifest=... bandwidths=[...]`: the paper's
metrics per bandwidth and test category for our checkpoints, official or Hugging Face
weights and ffmpeg baselines, as CSV/JSON, plots and a Markdown report (docs/evaluation.md)."""

from __future__ import annotations

import shutil
from pathlib import Path

import hydra
from hydra.utils import instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf

from encodec_train.evaluation.report import write_report
from encodec_train.evaluation.runner import build_systems, evaluate
from encodec_train.evaluation.testsets import check_test_manifest, ensure_demo_test_set
from encodec_train.user_errors import run_or_exit

USER_ERRORS = (ValueError, OSError)
"""Bad settings and missing or unreadable files (checkpoint mismatches and manifest errors are
ValueErrors): the command prints their one-line message, no traceback."""


def kbps_list(value: object) -> list[float]:
    """The `bandwidths` setting (a list of numbers) as floats."""
    given = OmegaConf.to_container(value) if isinstance(value, ListConfig) else value
    if isinstance(given, list):
        try:
            return [float(b) for b in given]
        except (TypeError, ValueError):
            pass
    raise ValueError(f"bandwidths={given}: give a list of kbps, e.g. [1.5,6]")


def run(cfg: DictConfig) -> Path:
    """Evaluate as `cfg` (conf/evaluate.yaml) says; return the report's path."""
    checkpoints = cfg.checkpoint
    if isinstance(checkpoints, str):
        checkpoints = [checkpoints]
    checkpoints = list(checkpoints or [])
    check_test_manifest(cfg.manifest, "manifest")  # before any checkpoint is loaded
    bandwidths = None if cfg.bandwidths is None else kbps_list(cfg.bandwidths)
    baselines = [instantiate(b, _convert_="all") for b in (cfg.baselines or {}).values()]
    systems, skipped = build_systems(checkpoints, bandwidths, baselines)
    if not systems:
        raise ValueError(
            "nothing to evaluate: give checkpoint=<run dir, sweep dir, .ckpt, .th or Hugging "
            "Face directory> (or a list), or keep a baseline that can run"
        )
    manifest = cfg.manifest or str(ensure_demo_test_set(cfg.demo_corpus))
    out = Path(cfg.output_dir)
    shutil.rmtree(out / "examples", ignore_errors=True)  # the examples of an earlier run
    metrics = list(cfg.metrics)
    evaluation = evaluate(
        systems,
        manifest,
        metrics,
        workers=cfg.workers,
        examples=cfg.examples,
        examples_root=out / "examples",
        progress=cfg.progress,
    )
    evaluation.skipped = skipped
    report = write_report(evaluation, metrics, manifest, out)
    OmegaConf.save(cfg, out / "evaluate.yaml")
    return report


@hydra.main(config_path="conf", config_name="evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    report = run_or_exit(lambda: run(cfg), USER_ERRORS)
    print(report.read_text())
    print(f"report: {report}")


if __name__ == "__main__":
    main()
