"""Small, fast training runs on the demo corpus for the training tests."""

from __future__ import annotations

import csv
import subprocess
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from encodec_train import CONFIG_DIR

CONF_DIR = CONFIG_DIR
REPO = Path(__file__).resolve().parents[2]


def fast_overrides(run_dir: Path, corpus: Path) -> list[str]:
    """Overrides that make the demo write into `run_dir`, read `corpus` and run in seconds."""
    return [
        f"run_dir={run_dir}",
        f"demo_corpus={corpus}",
        f"data.train_manifests=[{corpus / 'train.jsonl'}]",
        f"data.valid_manifests=[{corpus / 'valid.jsonl'}]",
        "data.batch_size=2",
        "data.num_workers=0",
        "data.valid_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.limit_val_batches=2",
        "audio_examples_every_n_steps=0",
        "training.log_every_n_steps=1",
        # The GAN step from the first step (the demo warms up without the adversary).
        "training.adversary_start_step=0",
    ]


def demo_config(tmp_path: Path, *overrides: str, corpus: Path | None = None):
    """The demo config, writing into `tmp_path / "run"`, sized to run in seconds."""
    corpus = corpus or tmp_path / "demo_corpus"
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[*fast_overrides(tmp_path / "run", corpus), *overrides])


def logged_steps(run_dir: Path) -> list[dict[str, float]]:
    """The training rows of the run's CSV logs (every start's version, in order), as floats
    (empty cells left out)."""
    rows = []
    versions = sorted(
        (run_dir / "logs").glob("version_*/metrics.csv"),
        key=lambda path: int(path.parent.name.split("_")[1]),
    )
    for path in versions:
        for row in csv.DictReader(path.open()):
            if row.get("train/loss_mel"):
                rows.append({key: float(value) for key, value in row.items() if value})
    return rows


def signal_during_training(
    command: list[str], signum: int, env: dict[str, str] | None = None
) -> tuple[int, str]:
    """Run `command` (a training run into `run_dir=`, made to write last.ckpt every step), send
    it `signum` once training has made a step, and return its exit status and output.

    Mid-training is where a scheduler's signal lands, and where Lightning's own SIGTERM
    handler is installed too (a signal before it reaches ours alone)."""
    run_dir = next(Path(c.split("=", 1)[1]) for c in command if c.startswith("run_dir="))
    process = subprocess.Popen(
        [*command, "checkpoint_every_n_steps=1"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 300
    while not (run_dir / "checkpoints" / "last.ckpt").exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no checkpoint written: {process.communicate()[0][-3000:]}")
        time.sleep(0.1)
    process.send_signal(signum)
    output, _ = process.communicate(timeout=300)
    return process.returncode, output
