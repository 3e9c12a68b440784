"""End to end: the status file, `tw-agent --status`, and the lease that
keeps a second agent off a connection ID."""

import json
import os
import signal
import socket
import stat
import subprocess
import threading
import time

import pytest

from tests.agentproc import CONNECTION_ID, TOKEN
from tests.clirun import home_of, run_cli

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def status_file(tmp_path, connection_id=CONNECTION_ID):
    return home_of(tmp_path) / ".local" / "state" / "tw-agent" / f"{connection_id}.json"


def write_lease(tmp_path, host, pid, age_seconds=0.0):
    path = status_file(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    now = time.time() - age_seconds
    record = {
        "pid": pid,
        "host": host,
        "connectionId": CONNECTION_ID,
        "state": "connected",
        "since": now,
        "updated": now,
        "nonce": "someone-else",
    }
    path.write_text(json.dumps(record))
    os.chmod(path, 0o600)
    return path


def dead_pid():
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_status_connected_exits_0_and_file_is_private(platform, start_agent, tmp_path):
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("sleep 5", id="long-one")
    agent.wait_for("command long-one started")
    # The status file is rewritten a second at most after a change.
    pause = threading.Event()
    for _ in range(30):
        status, output = run_cli(platform, tmp_path, "--status")
        if "long-one" in output:
            break
        pause.wait(0.2)
    assert status == 0, output
    assert f"{CONNECTION_ID}: connected since" in output
    assert f"pid {agent.pid} on host {socket.gethostname()}" in output
    assert "1 commands running (long-one)" in output
    assert "last frame received never" not in output
    path = status_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    record = json.loads(path.read_text())
    assert record["state"] == "connected" and record["running"] == ["long-one"]
    assert TOKEN not in path.read_text()
    agent.signal()
    assert agent.wait(20) == 0
    assert session.wait_response(request_id, timeout=5).exit_status == 0


def test_status_names_one_connection_id(platform, start_agent, tmp_path):
    agent = start_agent()
    platform.wait_session(timeout=20)
    assert run_cli(platform, tmp_path, "--status", CONNECTION_ID)[0] == 0
    status, output = run_cli(platform, tmp_path, "--status", "other-id")
    assert status == 1 and "not running" in output
    agent.signal()
    assert agent.wait(20) == 0


def test_status_after_stop_is_nonzero(platform, start_agent, tmp_path):
    agent = start_agent()
    platform.wait_session(timeout=20)
    agent.signal()
    assert agent.wait(20) == 0
    assert not status_file(tmp_path).exists()
    status, output = run_cli(platform, tmp_path, "--status")
    assert status == 1
    assert "no tw-agent status" in output


def test_status_after_kill_is_stale_and_nonzero(platform, start_agent, tmp_path):
    agent = start_agent()
    platform.wait_session(timeout=20)
    agent.signal(signal.SIGKILL)
    agent.wait(20)
    status, output = run_cli(platform, tmp_path, "--status")
    assert status == 1
    assert f"pid {agent.pid} is gone" in output


def test_status_while_reconnecting_is_nonzero(platform, start_agent, tmp_path):
    agent = start_agent("--reconnect-max", "30")
    session = platform.wait_session(timeout=20)
    platform.script_status("/service-info", [503] * 50)
    session.close(1011, "restart")
    agent.wait_for("reconnecting in")
    status, output = run_cli(platform, tmp_path, "--status")
    assert status == 1, output
    assert f"{CONNECTION_ID}: connecting since" in output
    agent.signal()
    assert agent.wait(20) == 0


def test_status_second_agent_same_connection_id_refused_exit_4(
    platform, start_agent, tmp_path
):
    first = start_agent()
    platform.wait_session(timeout=20)
    second = start_agent()
    assert second.wait(20) == 4
    line = second.wait_for("ERROR")
    assert f"pid {first.pid} on host {socket.gethostname()}" in line
    assert len(platform.sessions) == 1
    assert first.proc.poll() is None
    first.signal()
    assert first.wait(20) == 0


def test_status_fresh_lease_of_another_host_refused_exit_4(
    platform, start_agent, tmp_path
):
    write_lease(tmp_path, "login-node-b", 4242)
    agent = start_agent()
    assert agent.wait(20) == 4
    line = agent.wait_for("ERROR")
    assert "pid 4242 on host login-node-b" in line
    assert not platform.http_requests


@pytest.mark.parametrize(
    ("host", "age"),
    [("login-node-b", 120.0), (socket.gethostname(), 0.0)],
    ids=["not-refreshed", "holder-gone"],
)
def test_status_stale_lease_taken_over_with_warning(
    platform, start_agent, tmp_path, host, age
):
    pid = 4242 if age else dead_pid()
    write_lease(tmp_path, host, pid, age)
    agent = start_agent()
    platform.wait_session(timeout=20)
    line = agent.wait_for("WARNING - taking over the stale lease")
    assert f"pid {pid} on host {host}" in line
    record = json.loads(status_file(tmp_path).read_text())
    assert record["pid"] == agent.pid
    agent.signal()
    assert agent.wait(20) == 0


def test_status_xdg_state_home_is_honoured(platform, start_agent, tmp_path):
    state = tmp_path / "state"
    agent = start_agent(env={"XDG_STATE_HOME": str(state)})
    platform.wait_session(timeout=20)
    assert (state / "tw-agent" / f"{CONNECTION_ID}.json").exists()
    status, _ = run_cli(
        platform, tmp_path, "--status", env={"XDG_STATE_HOME": str(state)}
    )
    assert status == 0
    agent.signal()
    assert agent.wait(20) == 0
