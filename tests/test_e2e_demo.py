"""End to end: `tw-agent --demo` runs a scripted session in one command."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.agentproc import agent_command

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

ROOT = Path(__file__).resolve().parent.parent


def run_demo(tmp_path, *args, env_extra=None):
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8"}
    env.update(env_extra or {})
    result = subprocess.run(
        agent_command() + ["--demo", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=140,
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace")
    if result.returncode == 2 and "needs the optional demo extra" in output:
        # The pyz and the binary carry no WebSocket server library.
        pytest.skip("the agent under test has no demo extra: " + output[-200:])
    return result.returncode, output


@pytest.fixture
def bin_without_sbatch(tmp_path):
    """A PATH with what the demo's commands need, and no scheduler."""
    directory = tmp_path / "bin"
    directory.mkdir()
    for name in ("sh", "hostname", "id", "uname", "pwd"):
        found = shutil.which(name)
        if found:
            (directory / name).symlink_to(found)
    return str(directory)


def test_demo_without_sbatch_answers_every_command_exit_0(tmp_path, bin_without_sbatch):
    if os.environ.get("TWAGENT_UNDER_TEST"):
        pytest.skip("#4: a wrapper named by TWAGENT_UNDER_TEST needs the full PATH")
    status, output = run_demo(tmp_path, env_extra={"PATH": bin_without_sbatch})
    assert status == 0, output
    assert "agent connected and sent info" in output
    assert "| hello from" in output
    assert "exit status 3" in output
    assert "sbatch is not on PATH" in output
    assert "all went as expected" in output
    assert not re.search(r"demo-[0-9a-f]{32}", output)  # the made-up token


def test_demo_uses_the_given_work_dir(tmp_path, work_dir):
    status, output = run_demo(tmp_path, "-w", str(work_dir))
    assert status == 0, output
    assert f"| {work_dir}" in output


def test_demo_ignores_a_proxy_for_loopback(tmp_path):
    proxy = {"HTTPS_PROXY": "http://127.0.0.1:9"}
    status, output = run_demo(tmp_path, env_extra=proxy)
    assert status == 0, output


@pytest.mark.slurm
@pytest.mark.skipif(shutil.which("sbatch") is None, reason="needs sbatch on PATH")
def test_demo_with_sbatch_runs_a_job(tmp_path):
    probe = subprocess.run(["sinfo", "-h"], stdout=subprocess.PIPE, check=False)
    if probe.returncode != 0:
        pytest.skip("Slurm is not running")
    work = tmp_path / "work"
    work.mkdir()
    status, output = run_demo(tmp_path, "-w", str(work))
    assert status == 0, output
    assert "sbatch --parsable" in output
    assert "cat tw-agent-demo-" in output


def test_demo_without_the_extra_says_how_to_install_it_exit_2(tmp_path):
    shadow = tmp_path / "shadow" / "websockets"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text("raise ImportError('hidden by the test')\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": f"{shadow.parent}:{ROOT}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "twagent", "--demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        timeout=60,
        check=False,
    )
    output = result.stdout.decode()
    assert result.returncode == 2, output
    assert "pip install 'twagent[demo]'" in output
