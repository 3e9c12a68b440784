"""Helpers for tests that need the one-node Slurm cluster of ``.ci/slurm-up``.

``ensure_slurm()`` starts the cluster (or checks that it is up) and skips the
calling test when that is impossible here: not root, or slurm-wlm/munge not
installed.  A failing ``.ci/slurm-up`` is a test failure, not a skip.

The cluster is left running; ``.ci/slurm-down`` stops it.  The client commands
(sbatch, squeue, scancel, sinfo) find it through /etc/slurm/slurm.conf, so
they need no environment variables.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SLURM_UP = REPO_ROOT / ".ci" / "slurm-up"
SLURM_DOWN = REPO_ROOT / ".ci" / "slurm-down"

PARTITION = "debug"
# Programs that must exist; the daemons are in sbin, which may be off PATH.
REQUIRED_PROGRAMS = (
    "munged",
    "munge",
    "slurmctld",
    "slurmd",
    "sbatch",
    "squeue",
    "scancel",
    "sinfo",
    "scontrol",
)
_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/local/sbin", "/usr/sbin", "/sbin"]
)

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class SlurmCluster:
    """What a test needs to know about the running cluster."""

    state_dir: Path
    partition: str
    node: str


def slurm_dir() -> Path:
    """Directory holding the cluster's config, state and logs."""
    return Path(os.environ.get("TWAGENT_SLURM_DIR", "/tmp/twagent-slurm"))


def skip_reason() -> str | None:
    """Why Slurm cannot be started here, or None if it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "Slurm tests need root (slurmd must run jobs as root)"
    missing = [p for p in REQUIRED_PROGRAMS if not shutil.which(p, path=_SEARCH_PATH)]
    if missing:
        return (
            f"slurm-wlm/munge not installed (missing: {', '.join(missing)}); "
            "apt-get install -y slurm-wlm munge"
        )
    return None


def ensure_slurm(timeout: float = 120) -> SlurmCluster:
    """Start the cluster if needed and return it; skip the test if impossible.

    Runs ``.ci/slurm-up``, which is idempotent and takes a few hundredths of a
    second when the cluster is already up, so calling this from every test is
    fine.
    """
    reason = skip_reason()
    if reason:
        pytest.skip(reason)
    try:
        proc = subprocess.run(
            [str(SLURM_UP)],
            stdin=subprocess.DEVNULL,
            check=False,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{SLURM_UP} did not finish in {timeout} s:\n{exc.output or ''}",
            pytrace=False,
        )
    if proc.returncode != 0:
        pytest.fail(
            f"{SLURM_UP} failed (exit {proc.returncode}):\n{proc.stdout}",
            pytrace=False,
        )
    node = subprocess.run(
        ["hostname", "-s"], stdout=subprocess.PIPE, text=True, check=True
    ).stdout.strip()
    return SlurmCluster(state_dir=slurm_dir(), partition=PARTITION, node=node)


def slurm_fixture() -> SlurmCluster:
    """Body of a session fixture; wrap it in conftest.py, e.g.::

        from tests.slurm import slurm_fixture

        slurm = pytest.fixture(scope="session", name="slurm")(slurm_fixture)

    The cluster stays up after the session.
    """
    return ensure_slurm()


# ---------------------------------------------------------------- clients


def run(args: Sequence[str], timeout: float = 30) -> str:
    """Run a Slurm client command, return its stdout, raise if it fails."""
    proc = subprocess.run(
        list(args),
        stdin=subprocess.DEVNULL,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()}"
        )
    return proc.stdout


def sbatch(*args: str) -> str:
    """Submit a batch job with ``sbatch --parsable ARGS``; return its job id."""
    out = run(["sbatch", "--parsable", *args]).strip()
    return out.split(";", 1)[0]


def job_state(job_id: str) -> str | None:
    """The job's state in squeue (any state), or None once it has been purged."""
    proc = subprocess.run(
        ["squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T"],
        stdin=subprocess.DEVNULL,
        check=False,
        capture_output=True,
        text=True,
        timeout=30,
    )
    if proc.returncode != 0:
        # squeue rejects the id of a job that has left slurmctld's memory.
        if "Invalid job id" in proc.stderr:
            return None
        raise AssertionError(f"squeue failed: {proc.stderr.strip()}")
    return proc.stdout.strip() or None


def queued_job_ids() -> list[str]:
    """Ids that plain ``squeue`` lists (pending, running, completing...)."""
    return run(["squeue", "-h", "-o", "%i"]).split()


def wait_for(
    check: Callable[[], T],
    timeout: float,
    what: str,
    interval: float = 0.1,
) -> T:
    """Call ``check`` until it returns something truthy, at most ``timeout`` s.

    Returns that value; raises AssertionError naming ``what`` on timeout.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
