"""The one-node Slurm cluster of .ci/slurm-up works: driven with the plain
Slurm commands, without the agent."""

from __future__ import annotations

import subprocess

import pytest

from tests.slurm import ensure_slurm, job_state, queued_job_ids, run, sbatch, wait_for


@pytest.mark.slurm
@pytest.mark.timeout(120)
def test_job_runs_and_cancel_removes_a_running_job(tmp_path):
    cluster = ensure_slurm()
    partitions = run(["sinfo", "-h", "-o", "%P %T"]).split()
    assert partitions[0] == cluster.partition + "*", partitions

    # A job writes a file in its working directory and completes.
    done = tmp_path / "done.txt"
    job = sbatch(
        f"--chdir={tmp_path}",
        f"--output={tmp_path / 'job-%j.out'}",
        "--wrap",
        "echo written > done.txt",
    )
    wait_for(
        lambda: job_state(job) in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT"),
        30,
        f"job {job} to finish",
    )
    assert job_state(job) == "COMPLETED"
    assert done.read_text() == "written\n"

    # A long job shows up RUNNING; scancel makes it leave the queue.
    sleeper = sbatch("--output=/dev/null", "--job-name=sleeper", "--wrap", "sleep 300")
    try:
        wait_for(lambda: job_state(sleeper) == "RUNNING", 20, f"job {sleeper} to run")
        assert sleeper in queued_job_ids()
        run(["scancel", sleeper])
        wait_for(
            lambda: sleeper not in queued_job_ids(),
            20,
            f"job {sleeper} to leave squeue",
        )
        assert job_state(sleeper) in (None, "CANCELLED")
    finally:
        subprocess.run(
            ["scancel", sleeper], check=False, stderr=subprocess.DEVNULL, timeout=30
        )
