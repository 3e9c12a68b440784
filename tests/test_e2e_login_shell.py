"""End to end: --login-shell runs commands through `$SHELL -l -c`, so the
user's profile applies; without it, `sh -c` with the agent's environment."""

import shutil

import pytest

from tests.agentproc import CONNECTION_ID
from tests.clirun import home_of, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

BASH = shutil.which("bash")


@pytest.fixture
def profile(tmp_path):
    """A bash login profile that sets a variable and adds a tool to PATH."""
    home = home_of(tmp_path)
    tools = tmp_path / "site-tools"
    tools.mkdir()
    for name in ("site-sbatch", "bsub"):
        tool = tools / name
        tool.write_text("#!/bin/sh\necho submitted\n")
        tool.chmod(0o755)
    (home / ".bash_profile").write_text(
        f'export SITE_PROFILE=loaded\nexport PATH="{tools}:$PATH"\n'
    )
    return home


PROBE = 'echo "profile=${SITE_PROFILE:-none}"; site-sbatch || echo missing; echo "$0"'


def run_probe(platform, agent):
    session = platform.wait_session(timeout=20)
    request_id = session.send_command(PROBE)
    output = session.wait_response(request_id, timeout=20).output.decode()
    agent.signal()
    assert agent.wait(20) == 0
    return output


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_login_shell_profile_applies(platform, start_agent, profile):
    agent = start_agent("--login-shell", env={"SHELL": BASH})
    output = run_probe(platform, agent)
    assert "profile=loaded" in output
    assert "submitted" in output
    assert output.strip().endswith("bash")


@pytest.mark.skipif(BASH is None, reason="needs bash")
def test_login_shell_without_shell_falls_back_to_bash(platform, start_agent, profile):
    agent = start_agent("--login-shell", env={"SHELL": ""})
    output = run_probe(platform, agent)
    assert "profile=loaded" in output
    assert "$SHELL is unset or not runnable" in agent.log


def test_login_shell_off_runs_sh_without_profile(platform, start_agent, profile):
    agent = start_agent(env={"SHELL": BASH or "/bin/sh"})
    output = run_probe(platform, agent)
    assert "profile=none" in output
    assert "missing" in output
    assert output.strip().endswith("sh")


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("login", [True, False])
def test_login_shell_check_finds_schedulers_on_the_login_path(
    platform, tmp_path, work_dir, profile, login
):
    args = ["--check", CONNECTION_ID, "-w", str(work_dir)]
    args += ["--login-shell"] if login else []
    status, output = run_cli(platform, tmp_path, *args, env={"SHELL": BASH})
    assert status == 0, output
    line = next(x for x in output.splitlines() if " schedulers " in x)
    found = line.split("found: ", 1)[1].split(";")[0]
    assert ("bsub" in found) is login, line
