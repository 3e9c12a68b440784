"""End to end: `tw-agent --check` against the fixture platform."""

import os
import re
import shutil

import pytest

from tests.agentproc import CONNECTION_ID, TOKEN
from tests.clirun import run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]

STEPS = [
    "configuration",
    "CA bundle",
    "proxy",
    "name resolution",
    "TCP reach",
    "TLS chain",
    "clock skew",
    "service-info",
    "token",
    "WebSocket",
    "work dir",
    "shell",
    "schedulers",
    "local agent",
]


def step_line(output, name):
    match = re.search(rf"^(\S+)\s+{re.escape(name)}\s+(.*)$", output, re.MULTILINE)
    assert match, f"no {name!r} line in:\n{output}"
    return match.group(1), match.group(2)


def test_check_healthy_platform_exits_0_with_every_step(platform, tmp_path, work_dir):
    status, output = run_cli(
        platform, tmp_path, "--check", CONNECTION_ID, "-w", str(work_dir)
    )
    assert status == 0, output
    for name in STEPS:
        outcome, _ = step_line(output, name)
        assert outcome in ("ok", "info"), output
    assert "every required step passed" in output
    assert TOKEN not in output


def test_check_leaves_no_session_behind(platform, tmp_path, work_dir):
    status, output = run_cli(
        platform, tmp_path, "--check", CONNECTION_ID, "-w", str(work_dir)
    )
    assert status == 0, output
    (session,) = platform.sessions
    assert session.wait_closed(10) == 1000
    assert session.info is None  # no info: the platform never saw an agent


def test_check_wrong_token_fails_and_never_prints_it(platform, tmp_path, work_dir):
    wrong = "tw-wrong-token-0badc0de99"
    status, output = run_cli(
        platform,
        tmp_path,
        "--check",
        CONNECTION_ID,
        "-w",
        str(work_dir),
        env={"TOWER_ACCESS_TOKEN": wrong},
    )
    assert status == 1, output
    outcome, detail = step_line(output, "token")
    assert outcome == "FAIL"
    assert "access token is not valid" in detail
    assert "FAILED (token)" in output
    assert wrong not in output and TOKEN not in output
    assert not platform.sessions


def test_check_token_given_with_flag_is_not_printed(platform, tmp_path, work_dir):
    status, output = run_cli(
        platform,
        tmp_path,
        "--check",
        CONNECTION_ID,
        "-w",
        str(work_dir),
        "-t",
        TOKEN,
        env={"TOWER_ACCESS_TOKEN": None},
    )
    assert status == 0, output
    assert TOKEN not in output


def test_check_missing_work_dir_fails_but_runs_the_other_steps(platform, tmp_path):
    missing = tmp_path / "nowhere"
    status, output = run_cli(
        platform, tmp_path, "--check", CONNECTION_ID, "-w", str(missing)
    )
    assert status == 1
    assert step_line(output, "work dir")[0] == "FAIL"
    assert step_line(output, "token")[0] == "ok"


def test_check_unknown_connection_id_fails_the_websocket_step(
    platform, tmp_path, work_dir
):
    status, output = run_cli(
        platform, tmp_path, "--check", "no-such-id", "-w", str(work_dir)
    )
    assert status == 1
    outcome, detail = step_line(output, "WebSocket")
    assert outcome == "FAIL" and "does not know connection ID" in detail


def test_check_closed_port_fails_tcp_reach(platform, tmp_path, work_dir):
    platform.stop()
    status, output = run_cli(
        platform, tmp_path, "--check", CONNECTION_ID, "-w", str(work_dir)
    )
    assert status == 1
    assert step_line(output, "TCP reach")[0] == "FAIL"
    assert step_line(output, "work dir")[0] == "ok"


def test_check_missing_schedulers_are_never_fatal(platform, tmp_path, work_dir):
    if os.environ.get("TWAGENT_UNDER_TEST"):
        pytest.skip("#4: a wrapper named by TWAGENT_UNDER_TEST needs the full PATH")
    shell_only = tmp_path / "bin"
    shell_only.mkdir()
    (shell_only / "sh").symlink_to(shutil.which("sh"))
    status, output = run_cli(
        platform,
        tmp_path,
        "--check",
        CONNECTION_ID,
        "-w",
        str(work_dir),
        env={"PATH": str(shell_only)},
    )
    assert status == 0, output
    outcome, detail = step_line(output, "schedulers")
    assert outcome == "info"
    assert detail.startswith("found: none;"), detail


def test_check_4000_reports_an_agent_already_connected(platform, tmp_path, work_dir):
    platform.reject_next_with(4000, on_connect=True)
    status, output = run_cli(
        platform, tmp_path, "--check", CONNECTION_ID, "-w", str(work_dir)
    )
    outcome, text = step_line(output, "WebSocket")
    assert outcome == "info", output
    assert "an agent is already connected" in text
    assert status == 0, output
