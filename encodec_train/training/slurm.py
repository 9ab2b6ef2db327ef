"""SLURM: the job's id, its requeue, and Lightning's view of the cluster.

A run has exactly one requeue mechanism: `StopOnSignal` catches the time-limit signal
(USR1 from the sbatch scripts in slurm/, USR2 from the submitit launcher), the step finishes,
`last.ckpt` is written, and `requeue_job` puts the same job back in the queue; the requeued
job runs the same command, which resumes from `last.ckpt` with the same W&B run id. Lightning's
own SLURM auto-requeue is switched off (`cluster_plugins`), and the submitit launcher configs
set `max_num_timeout: 0`, so neither requeues a second time.
"""

from __future__ import annotations

import logging
import os
import subprocess

from lightning.pytorch.plugins.environments import SLURMEnvironment

log = logging.getLogger(__name__)


def slurm_job_id() -> str | None:
    """The id `scontrol requeue` takes: `<array job>_<task>` in a job array, else the job's."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array_job and task:
        return f"{array_job}_{task}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_job() -> str | None:
    """Requeue this SLURM job (`scontrol requeue`); returns its id, None outside SLURM."""
    job = slurm_job_id()
    if job is None:
        return None
    result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"scontrol requeue {job} failed: {result.stderr.strip()}")
    log.info("requeued SLURM job %s", job)
    return job


def cluster_plugins() -> list[SLURMEnvironment]:
    """Under SLURM (ranks from `srun`), Lightning's SLURM environment without its own
    auto-requeue; elsewhere none (Lightning picks the local environment)."""
    return [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
