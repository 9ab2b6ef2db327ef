"""Running on clusters: the global batch over ranks, the sbatch scripts, the submitit launcher
configs, sweeps, the dry run, and the requeue on SLURM's time-limit signal."""

from __future__ import annotations

import csv
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from run_helpers import CONF_DIR, REPO, fast_overrides, signal_during_training

from encodec_train import runs
from encodec_train.convert import export_official
from encodec_train.data.manifest import ManifestEntry, write_manifest
from encodec_train.training.config_checks import ConfigError, check_config
from encodec_train.training.dry_run import plan
from encodec_train.training.resolvers import sweep_point
from encodec_train.training.run_record import remove_if_empty
from encodec_train.training.run_status import read_status, write_status


def compose_config(*overrides: str, hydra: bool = False):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


@pytest.mark.parametrize(
    "devices, nodes, per_rank", [(8, 1, 8), (8, 2, 4), (4, 1, 16), (8, 8, 1), ([0, 1], 1, 32)]
)
def test_the_papers_global_batch_is_split_over_the_ranks(devices, nodes, per_rank):
    devices_override = f"[{','.join(map(str, devices))}]" if isinstance(devices, list) else devices
    cfg = compose_config(
        "+recipe=24khz", f"trainer.devices={devices_override}", f"trainer.num_nodes={nodes}"
    )
    assert cfg.data.batch_size == per_rank
    assert check_config(cfg).startswith(
        f"effective batch: 64 segments × 1 s per update = {per_rank}"
    )


def test_a_global_batch_that_does_not_divide_fails_naming_the_keys():
    with pytest.raises(ConfigError, match=r"global_batch_size=64 does not divide over 6 ranks"):
        check_config(compose_config("+recipe=24khz", "trainer.devices=3", "trainer.num_nodes=2"))
    with pytest.raises(ConfigError, match=r"data.batch_size=2 × 8 ranks = 16 segments"):
        check_config(compose_config("+recipe=24khz", "data.batch_size=2"))
    # Without a global batch, data.batch_size is per rank (the demo).
    assert compose_config("trainer=ddp_cpu").data.batch_size == 4


def test_code_shards_split_the_recipes_global_batch_over_the_ranks():
    # The entropy model's recipes on pre-extracted codes: 64 segments over 8 GPUs, not a per-rank
    # batch of the data group's own that the recipe's global batch refuses at start-up.
    shards = ("data=code_shards", "data.train_root=codes", "codec_checkpoint=null")
    cfg = compose_config("+recipe=24khz_lm", *shards)
    assert cfg.data.batch_size == 8
    assert check_config(cfg).startswith("effective batch: 64 segments × 2 s per update = 8")
    assert compose_config("+recipe=24khz_lm", "trainer.devices=4", *shards).data.batch_size == 16
    # No global batch (no recipe): the data group's 16 per rank.
    assert compose_config(*shards[:2], "trainer=ddp_cpu").data.batch_size == 16
    # Audio data derives its batch from the global one only: null is refused by name.
    with pytest.raises(ValueError, match="global_batch_size, which is null: set one of them"):
        check_config(compose_config("data=mixture_24khz"))


def fake_commands(folder: Path, **scripts: str) -> dict[str, str]:
    """An environment whose PATH finds the given shell scripts first."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = folder / name
        path.write_text("#!/bin/bash\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{folder}:{os.environ['PATH']}"}


@pytest.mark.parametrize("script", ["train_1node.sbatch", "train_multinode.sbatch"])
def test_sbatch_scripts_parse_and_launch_the_training_on_every_task(tmp_path, script):
    path = REPO / "slurm" / script
    subprocess.run(["bash", "-n", str(path)], check=True)
    header = [line for line in path.read_text().splitlines() if line.startswith("#SBATCH")]
    assert "#SBATCH --signal=USR1@300" in header and "#SBATCH --requeue" in header
    assert "#SBATCH --ntasks-per-node=8" in header and "#SBATCH --gpus-per-node=8" in header
    # Rendered as SLURM would run it on 2 nodes, with srun replaced by a recorder.
    env = fake_commands(tmp_path / "bin", srun='echo "srun $*"')
    env.update(SLURM_NTASKS_PER_NODE="8", SLURM_JOB_NUM_NODES="2", SLURM_JOB_ID="77")
    result = subprocess.run(
        ["bash", str(path), "+recipe=24khz", "run_name=big"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    command = result.stdout.split()
    assert command[:2] == ["srun", "--kill-on-bad-exit=1"]
    assert command[2:5] == ["python", "-m", "encodec_train"]
    overrides = command[5:]
    assert overrides == [
        "trainer.devices=8",
        "trainer.num_nodes=2",
        "+recipe=24khz",
        "run_name=big",
    ]
    # Those overrides give a config that passes the start-up checks: 64 = 4 × 16 ranks.
    assert "4 per rank × 16 ranks" in check_config(compose_config(*overrides))


def test_launcher_configs_put_each_sweep_point_on_its_own_gpus():
    cfg = compose_config("hydra/launcher=slurm", hydra=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (1, 8, 8)
    assert launcher.max_num_timeout == 0  # submitit's requeue off: ours is the one
    assert launcher.signal_delay_s > 0
    multinode = compose_config("hydra/launcher=slurm_multinode", hydra=True).hydra.launcher
    assert (multinode.nodes, multinode.tasks_per_node) == (2, 8)
    local = compose_config("hydra/launcher=local", hydra=True).hydra.launcher
    assert local._target_.endswith("LocalLauncher")


def test_the_bandwidth_sweep_is_the_papers_ablation():
    cfg = compose_config("+recipe=24khz", "+sweep=bandwidths", hydra=True)
    assert str(cfg.hydra.mode) == "RunMode.MULTIRUN"
    points = cfg.hydra.sweeper.params["model.target_bandwidths"]
    assert points == "[1.5],[3.0],[6.0],[12.0],[24.0],[1.5,3.0,6.0,12.0,24.0]"
    assert cfg.run_name == "bandwidth_sweep"


def test_sweep_point_names_leave_out_paths_and_placement():
    excludes = ["run_dir", "trainer.devices", "data.train_manifests"]
    name = sweep_point(
        [
            "+recipe=24khz",
            "run_dir=/scratch/x",
            "trainer.devices=8",
            "model.target_bandwidths=[1.5]",
            "init_from=/ckpt/a.th",
        ],
        excludes,
    )
    assert name == "+recipe=24khz,init_from=_ckpt_a.th,model.target_bandwidths=[1.5]"
    assert sweep_point(["run_dir=/x"], excludes) == "defaults"


def test_dry_run_reports_every_problem_and_the_plan(tmp_path):
    text, problems = plan(
        compose_config("+recipe=24khz", f"runs_root={tmp_path}", "data.num_workers=0")
    )
    assert problems == 1
    assert (
        "PROBLEM: " in text
        and "data.train_manifests: manifest data_manifests/jamendo.jsonl" in text
    )
    assert "effective batch: 64 segments × 1 s per update = 8 per rank × 8 ranks" in text
    assert "model: 24000 Hz, 1 channel(s), bandwidths [1.5, 3.0, 6.0, 12.0, 24.0] kbps" in text
    assert "discriminator: 5 × " in text  # one per bandwidth
    assert "schedule: 600000 updates (300 epochs × 2000 updates" in text
    assert f"run folder: {tmp_path / 'encodec_24khz'} (new)" in text
    assert "held-out validation: off" in text
    assert not (tmp_path / "encodec_24khz").exists()
    # A test manifest for held-out validation: a missing one is a problem before any GPU work,
    # an existing one is counted.
    missing = tmp_path / "test.jsonl"
    held_out = f"callbacks.held_out_validation.manifest={missing}"
    text, problems = plan(compose_config("+recipe=24khz", "data.num_workers=0", held_out))
    assert problems == 2 and f"PROBLEM: {held_out} does not exist" in text
    write_manifest([ManifestEntry("a.wav", 2.0, 24000, 1, "speech", "test")], missing)
    text, problems = plan(compose_config("+recipe=24khz", "data.num_workers=0", held_out))
    assert problems == 1 and f"held-out validation: {missing}: 1 file(s) every 300 updates" in text


def test_a_dry_run_with_wandb_makes_no_run_id(tmp_path):
    # The W&B run id is made by the first real start; the dry run only reports it.
    overrides = ("+recipe=24khz", "logger=wandb", f"runs_root={tmp_path}", "data.num_workers=0")
    text, _ = plan(compose_config(*overrides))
    assert "logger: W&B project encodec-train (online), run a new id," in text
    assert not (tmp_path / "encodec_24khz").exists()
    (tmp_path / "encodec_24khz").mkdir()
    (tmp_path / "encodec_24khz" / "run_id").write_text("0123456789ab\n")
    text, _ = plan(compose_config(*overrides))
    assert "logger: W&B project encodec-train (online), run 0123456789ab," in text
    # resume=wandb:... continues that W&B run, whatever this run folder's id is.
    text, _ = plan(compose_config(*overrides, "resume=wandb:team/codecs/fedcba987654"))
    assert "logger: W&B project codecs (online), run fedcba987654," in text


def test_a_dry_run_loads_init_from_as_a_start_would(tmp_path):
    demo = ("data.num_workers=0", f"runs_root={tmp_path}", "demo_corpus=null")
    official = tmp_path / "official.th"
    export_official(instantiate(compose_config(*demo).model, _convert_="all"), official)
    text, problems = plan(compose_config(*demo, f"init_from={official}"))
    assert f"init_from: {official}: the weights fit the model" in text
    text, problems = plan(compose_config(*demo, f"init_from={tmp_path / 'nothere.th'}"))
    assert problems >= 1 and f"PROBLEM: init_from: {tmp_path / 'nothere.th'} does not exist" in text
    wider = compose_config(*demo, "model.n_filters=16").model
    export_official(instantiate(wider, _convert_="all"), official)
    text, problems = plan(compose_config(*demo, f"init_from={official}"))
    assert f"PROBLEM: init_from={official} does not match the model's architecture" in text


def test_a_dry_run_without_validation_data(tmp_path, corpus):
    # data.valid_manifests=null turns validation off (docs/data.md); the plan says so.
    text, problems = plan(
        compose_config(
            f"data.train_manifests=[{corpus / 'train.jsonl'}]",
            "data.valid_manifests=null",
            f"runs_root={tmp_path}",
            "demo_corpus=null",
        )
    )
    assert problems == 0, text
    assert "data: validation off (data.valid_manifests is null)" in text


def test_a_dry_run_builds_the_mixing_strategies_pools(tmp_path, corpus):
    # A strategy the manifests cannot serve fails a start in the data module's setup.
    cfg = compose_config(
        f"data.train_manifests=[{corpus / 'train.jsonl'}]",
        f"data.valid_manifests=[{corpus / 'valid.jsonl'}]",
        "data.strategies.0.include_domains=[musc]",
        f"runs_root={tmp_path}",
        "demo_corpus=null",
    )
    text, problems = plan(cfg)
    assert problems == 1
    assert "PROBLEM: data: strategy s1: unknown domain(s) musc in include_domains" in text


def test_a_dry_run_in_a_fresh_folder_leaves_no_empty_runs_folder(tmp_path, monkeypatch):
    # Hydra creates the whole run_dir path (runs/encodec_24khz) before a dry run or a failed
    # start; both must remove what they left empty, not only the last folder.
    monkeypatch.chdir(tmp_path)
    kept = tmp_path / "kept"
    (kept / "runs" / "encodec_24khz").mkdir(parents=True)
    (kept / "note.txt").write_text("not ours")
    (tmp_path / "runs" / "encodec_24khz").mkdir(parents=True)
    remove_if_empty("runs/encodec_24khz")
    remove_if_empty(kept / "runs" / "encodec_24khz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]
    assert sorted(p.name for p in kept.iterdir()) == ["note.txt"]


@pytest.mark.slow
def test_dry_run_from_the_command_line_writes_nothing(tmp_path, corpus):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "encodec_train",
            "dry_run=true",
            *fast_overrides(tmp_path / "r", corpus),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "all checks passed" in result.stdout
    assert "resume: none: no last.ckpt in the run folder, a fresh start" in result.stdout
    assert not (tmp_path / "r").exists()
    failing = subprocess.run(
        [
            sys.executable,
            "-m",
            "encodec_train",
            "+recipe=24khz",
            "dry_run=true",
            f"runs_root={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert failing.returncode == 1 and "1 problem(s) found" in failing.stdout


@pytest.mark.slow
def test_time_limit_signal_writes_last_ckpt_requeues_and_the_rerun_continues(tmp_path, corpus):
    """SLURM's USR1 before the time limit: the step finishes, last.ckpt is written, the job is
    requeued with `scontrol requeue <job id>`, and the same command continues the run."""
    record = tmp_path / "scontrol.log"
    env = fake_commands(tmp_path / "bin", scontrol=f'echo "$*" >> {record}')
    env["SLURM_JOB_ID"] = "4242"  # without SLURM_NTASKS Lightning keeps its local environment
    command = [
        sys.executable,
        "-m",
        "encodec_train",
        "trainer.max_steps=1000",
        "trainer.max_epochs=-1",
        *fast_overrides(tmp_path / "run", corpus),
    ]
    returncode, output = signal_during_training(command, signal.SIGUSR1, env)
    assert returncode == 0, output[-3000:]
    assert "SLURM job 4242 is requeued" in output
    assert record.read_text().split() == ["requeue", "4242"]
    last = tmp_path / "run" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, weights_only=True)["global_step"]
    assert 1 <= stopped_at < 1000
    run_id = (tmp_path / "run" / "run_id").read_text()
    status = read_status(tmp_path / "run")
    assert (status["state"], status["signal"], status["step"]) == ("stopped", "SIGUSR1", stopped_at)

    # The requeued job runs the same command: it continues from the checkpoint, same run id.
    rerun = [
        c if c != "trainer.max_steps=1000" else f"trainer.max_steps={stopped_at + 1}"
        for c in command
    ]
    result = subprocess.run(rerun, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (
        f"trained steps {stopped_at} -> {stopped_at + 1} (resumed at step {stopped_at})"
        in result.stdout
    )
    assert (tmp_path / "run" / "run_id").read_text() == run_id
    assert record.read_text().split() == ["requeue", "4242"]  # no second requeue


@pytest.mark.slow
def test_submitit_local_sweep_runs_each_point_as_its_own_job(tmp_path, corpus):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "encodec_train",
            "-m",
            "hydra/launcher=local",
            "model.target_bandwidths=[1.5],[3.0]",
            "trainer.max_steps=1",
            "trainer.max_epochs=-1",
            "data.valid_batches=1",
            "trainer.limit_val_batches=1",
            *fast_overrides(tmp_path / "sweep", corpus),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    points = {p.parent.name: p.parent for p in (tmp_path / "sweep").glob("*/run_id")}
    names = sorted(n for n in points)
    assert [n.split("model.target_bandwidths=")[1].split(",")[0] for n in names] == [
        "[1.5]",
        "[3.0]",
    ]
    jobs = [p for p in (tmp_path / "sweep" / ".submitit").iterdir() if p.name.isdigit()]
    assert len(jobs) == 2  # two submitit jobs, one per point
    rows = [
        runs.run_row(path, tmp_path / "sweep", ["valid/mel"]) for path in sorted(points.values())
    ]
    assert [row["status"] for row in rows] == ["finished", "finished"]
    assert "valid/mel@1.5" in rows[0] and "valid/mel@3" in rows[1]


def test_runs_table_lists_the_sweep_points(tmp_path):
    """The table from status files and start records, as the training writes them."""
    for name, step, state, mel in (("a", 5, "finished", 0.5), ("b", 3, "stopped", 0.75)):
        folder = tmp_path / name
        (folder / "starts" / "0").mkdir(parents=True)
        (folder / "run_id").write_text(f"id{name}\n")
        (folder / "starts" / "0" / "overrides.yaml").write_text(f"- trainer.max_steps={step}\n")
        write_status(
            folder,
            {
                "state": state,
                "signal": "SIGTERM",
                "step": step,
                "validation": {"valid/mel@6kbps": mel, "valid/mel@1.5kbps": 2 * mel},
                "held_out": {"heldout/si_snr@6kbps": 10 * mel},
                "wandb_url": None,
            },
        )
    out = tmp_path / "table.csv"
    assert runs.main([str(tmp_path), "--csv", str(out)]) == 0
    rows = list(csv.DictReader(out.open()))
    assert [(r["run"], r["step"], r["status"]) for r in rows] == [
        ("a", "5", "finished"),
        ("b", "3", "stopped (SIGTERM)"),
    ]
    # Bandwidths in numeric order, the held-out validation's metrics beside the loop's.
    assert list(rows[0])[4:7] == ["heldout/si_snr@6", "valid/mel@1.5", "valid/mel@6"]
    assert (rows[1]["valid/mel@6"], rows[1]["valid/mel@1.5"]) == ("0.75", "1.5")
    assert rows[1]["heldout/si_snr@6"] == "7.5"
    assert rows[0]["overrides"] == "trainer.max_steps=5"
