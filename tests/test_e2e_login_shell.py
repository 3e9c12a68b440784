"""End to end: --login-shell runs commands through `$SHELL -l -c`, so the
user's profile applies; without it, `sh -c` with the agent's environment."""

import shutil

import pytest

from tests.clirun import home_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

BASH = shutil.which("bash")


@pytest.fixture
def profile(tmp_path):
    """A bash login profile that sets a variable and adds a tool to PATH."""
    home = home_of(tmp_path)
    tools = tmp_path / "site-tools"
    tools.mkdir()
    tool = tools / "site-sbatch"
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
