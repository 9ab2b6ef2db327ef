"""`resume=wandb:...`: the run's local folder first, else its checkpoint artifact, and the same
W&B run continues.

The test double replaces `wandb.Api` and stands for exactly what training/resume.py calls:
`wandb.Api(timeout=...)`, `.run(path)`, `.artifact(name, type=...)`, and on the artifact
`.metadata` and `.download(root=...)`. Everything past that boundary (W&B's servers) is not
exercised here; the offline test at the end runs the real `wandb` library with no network.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import wandb
from omegaconf import OmegaConf
from run_helpers import demo_config, logged_steps

from encodec_train.training.builder import fit
from encodec_train.training.config_checks import ConfigError
from encodec_train.training.resume import (
    ResumeError,
    WandbRef,
    parse_wandb_ref,
    resolve_resume,
)
from encodec_train.training.wandb_run import WandbUnreachableError, check_reachable


@pytest.mark.parametrize(
    "text, expected",
    [
        ("wandb:team/codecs/ab12cd34", WandbRef("team", "codecs", "ab12cd34", "latest")),
        ("wandb:team/codecs/ab12cd34:best", WandbRef("team", "codecs", "ab12cd34", "best")),
        ("wandb:team/codecs/ab12cd34:v7", WandbRef("team", "codecs", "ab12cd34", "v7")),
        (
            "wandb:https://wandb.ai/team/codecs/runs/ab12cd34?nw=1",
            WandbRef("team", "codecs", "ab12cd34", "latest"),
        ),
        (
            "wandb:https://wandb.ai/team/codecs/runs/ab12cd34:v2",
            WandbRef("team", "codecs", "ab12cd34", "v2"),
        ),
    ],
)
def test_wandb_references_parse(text, expected):
    assert parse_wandb_ref(text) == expected
    assert expected.artifact_name == f"team/codecs/model-ab12cd34:{expected.alias}"


@pytest.mark.parametrize("text", ["wandb:ab12cd34", "wandb:a/b/c:newest", "wandb:a/b/c/d"])
def test_malformed_wandb_references_are_refused_with_the_expected_form(text):
    with pytest.raises(ResumeError, match="expected wandb:<entity>/<project>/<run_id>"):
        parse_wandb_ref(text)


class FakeArtifact:
    def __init__(self, checkpoint: Path, metadata: dict) -> None:
        self.checkpoint, self.metadata = checkpoint, metadata

    def download(self, root: str) -> str:
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copy(self.checkpoint, Path(root) / self.checkpoint.name)
        return root


class FakeApi:
    """`wandb.Api` with the runs and artifacts of `FakeApi.store`."""

    runs: set[str] = set()
    artifacts: dict[str, FakeArtifact] = {}
    calls: list[tuple] = []

    def __init__(self, timeout: int | None = None) -> None:
        pass

    def run(self, path: str):
        FakeApi.calls.append(("run", path))
        if path not in FakeApi.runs:
            raise wandb.errors.CommError(f"Could not find run {path}")
        return object()

    def artifact(self, name: str, type: str | None = None):
        FakeApi.calls.append(("artifact", name, type))
        if name not in FakeApi.artifacts:
            raise wandb.errors.CommError(f"artifact '{name}' not found")
        return FakeApi.artifacts[name]


@pytest.fixture
def fake_wandb(monkeypatch):
    FakeApi.runs, FakeApi.artifacts, FakeApi.calls = set(), {}, []
    monkeypatch.setattr(wandb, "Api", FakeApi)
    return FakeApi


def train(tmp_path: Path, corpus: Path, run_dir: Path, steps: int, *overrides: str):
    cfg = demo_config(
        tmp_path,
        f"run_dir={run_dir}",
        f"runs_root={run_dir.parent}",
        f"trainer.max_steps={steps}",
        "trainer.max_epochs=-1",
        *overrides,
        corpus=corpus,
    )
    module, trainer, _ = fit(cfg)
    return cfg, module, trainer


def test_resume_downloads_the_artifact_and_continues_the_run_exactly(tmp_path, corpus, fake_wandb):
    first, _, _ = train(tmp_path, corpus, tmp_path / "cluster_a" / "run", 2)
    run_id = (tmp_path / "cluster_a" / "run" / "run_id").read_text().strip()
    fake_wandb.runs.add(f"team/codecs/{run_id}")
    fake_wandb.artifacts[f"team/codecs/model-{run_id}:latest"] = FakeArtifact(
        tmp_path / "cluster_a" / "run" / "checkpoints" / "last.ckpt",
        {"config": OmegaConf.to_container(first, resolve=True)},
    )
    # Another machine: no local folder holds the run, so the artifact is downloaded.
    here = tmp_path / "cluster_b" / "continued"
    cfg, module, trainer = train(tmp_path, corpus, here, 3, f"resume=wandb:team/codecs/{run_id}")
    assert (module.start_step, trainer.global_step) == (2, 3)
    assert (here / "run_id").read_text().strip() == run_id  # the same W&B run continues
    assert ("artifact", f"team/codecs/model-{run_id}:latest", "model") in fake_wandb.calls
    assert torch.load(here / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 3

    # The step after the download equals the uninterrupted run's.
    _, _, _ = train(tmp_path, corpus, tmp_path / "uninterrupted" / "run", 3)
    expected = logged_steps(tmp_path / "uninterrupted" / "run")[-1]
    resumed = logged_steps(here)[-1]
    assert resumed["step"] == expected["step"]
    for key in ("train/loss_mel", "train/loss_time", "train/loss_commitment"):
        assert resumed[key] == expected[key], key


def test_resume_continues_the_local_run_folder_without_the_network(tmp_path, corpus, fake_wandb):
    train(tmp_path, corpus, tmp_path / "runs" / "first", 2)
    run_id = (tmp_path / "runs" / "first" / "run_id").read_text().strip()
    cfg, module, trainer = train(
        tmp_path, corpus, tmp_path / "runs" / "other_name", 3, f"resume=wandb:team/codecs/{run_id}"
    )
    assert cfg.run_dir == str(tmp_path / "runs" / "first")
    assert (module.start_step, trainer.global_step) == (2, 3)
    assert fake_wandb.calls == []


def resume_config(tmp_path: Path, corpus: Path, reference: str, *overrides: str):
    return demo_config(
        tmp_path,
        f"runs_root={tmp_path / 'empty_root'}",
        f"resume={reference}",
        *overrides,
        corpus=corpus,
    )


def test_unknown_runs_and_runs_without_checkpoints_are_named(tmp_path, corpus, fake_wandb):
    with pytest.raises(ResumeError, match="W&B has no run team/codecs/nosuchrun"):
        resolve_resume(resume_config(tmp_path, corpus, "wandb:team/codecs/nosuchrun"))
    fake_wandb.runs.add("team/codecs/emptyrun")
    with pytest.raises(ResumeError, match="has no checkpoint team/codecs/model-emptyrun:best"):
        resolve_resume(resume_config(tmp_path, corpus, "wandb:team/codecs/emptyrun:best"))


def test_an_artifact_of_another_model_is_refused_naming_the_keys(tmp_path, corpus, fake_wandb):
    cfg = resume_config(tmp_path, corpus, "wandb:team/codecs/bigger")
    recorded = OmegaConf.to_container(cfg, resolve=True)
    recorded["model"]["codebook_size"] = 1024
    recorded["discriminator"]["filters"] = 64
    fake_wandb.runs.add("team/codecs/bigger")
    fake_wandb.artifacts["team/codecs/model-bigger:latest"] = FakeArtifact(
        tmp_path / "unused.ckpt", {"config": recorded}
    )
    with pytest.raises(ConfigError) as error:
        resolve_resume(cfg)
    message = str(error.value)
    assert "model.codebook_size: 1024 there, 32 here" in message
    assert "discriminator.filters: 64 there" in message
    assert "model.sample_rate" not in message


def test_a_run_folder_of_another_run_is_not_taken_over(tmp_path, corpus, fake_wandb):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "run_id").write_text("someoneelse\n")
    fake_wandb.runs.add("team/codecs/mine")
    with pytest.raises(ResumeError, match="belongs to W&B run someoneelse, not mine"):
        resolve_resume(resume_config(tmp_path, corpus, "wandb:team/codecs/mine"))


@pytest.mark.slow
def test_offline_wandb_run_resumes_by_id_and_logs_its_checkpoints(tmp_path, corpus, monkeypatch):
    """The real wandb library, offline: checkpoints are logged as artifacts as they are
    written, and `resume=wandb:` by run id continues the same W&B run from the local folder."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))
    logged: list[tuple[str, list[str], dict]] = []
    original = wandb.sdk.wandb_run.Run.log_artifact

    def spy(run, artifact, aliases=None, **kwargs):
        logged.append((sorted(artifact.manifest.entries), list(aliases or []), artifact.metadata))
        return original(run, artifact, aliases=aliases, **kwargs)

    monkeypatch.setattr(wandb.sdk.wandb_run.Run, "log_artifact", spy)
    run_dir = tmp_path / "runs" / "first"
    # One epoch of 2 updates: a validation at its end writes best.ckpt too.
    train(
        tmp_path,
        corpus,
        run_dir,
        2,
        "logger=wandb",
        "trainer.limit_train_batches=2",
        "trainer.max_epochs=1",
        "checkpoint_every_n_steps=1",
    )
    wandb.finish()
    run_id = (run_dir / "run_id").read_text().strip()
    files = [entries for entries, _, _ in logged]
    assert ["last.ckpt"] in files and ["best.ckpt"] in files
    assert [aliases for entries, aliases, _ in logged if entries == ["best.ckpt"]][0] == ["best"]
    assert all(meta["config"]["model"]["sample_rate"] == 24000 for _, _, meta in logged)

    cfg, module, trainer = train(
        tmp_path,
        corpus,
        tmp_path / "runs" / "second",
        3,
        "logger=wandb",
        f"resume=wandb:someone/encodec-train/{run_id}",
    )
    wandb.finish()
    assert (module.start_step, trainer.global_step) == (2, 3)
    assert cfg.run_dir == str(run_dir)
    assert len(list((run_dir / "wandb").glob(f"offline-run-*-{run_id}"))) == 2
    assert (
        torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["wandb_run_id"]
        == run_id
    )


def test_online_wandb_without_a_network_fails_before_training(tmp_path, corpus, monkeypatch):
    import socket

    def unreachable(address, timeout=None):
        raise OSError("Network is unreachable")

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    with pytest.raises(
        WandbUnreachableError, match="cannot reach api.wandb.ai:443.*WANDB_MODE=offline"
    ):
        fit(demo_config(tmp_path, "logger=wandb", corpus=corpus))
    assert not (tmp_path / "run" / "starts").exists()
    monkeypatch.setenv("WANDB_MODE", "offline")
    check_reachable()  # offline: nothing to reach


def test_the_wandb_logger_takes_the_entity_and_project_of_the_resumed_run(tmp_path, corpus):
    # The run lives in team/codecs, not in the config's default project: the logger must
    # continue it there, not start a run of the same id in encodec-train.
    folder = tmp_path / "empty_root" / "first"
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "run_id").write_text("0123456789ab\n")
    cfg = resume_config(tmp_path, corpus, "wandb:team/codecs/0123456789ab", "logger=wandb")
    assert resolve_resume(cfg) == str(folder / "checkpoints" / "last.ckpt")
    assert (cfg.logger.entity, cfg.logger.project) == ("team", "codecs")
    assert cfg.logger.name is None  # W&B keeps the run's name; run_name would rename it
    assert cfg.run_dir == str(folder)
