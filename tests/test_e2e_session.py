"""End to end: start-up checks, session lifecycle, close codes, bad input."""

import socket
import threading

import pytest

from tests.agentproc import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TRACE = {"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": "TRACE"}


def requests_to(platform, path):
    return [r for r in platform.http_requests if r[1].endswith(path)]


def test_session_info_heartbeats_and_clean_stop(platform, start_agent):
    agent = start_agent(heartbeat="300ms")
    session = platform.wait_session(timeout=20)
    session.wait_heartbeats(3, timeout=10)
    agent.signal()
    assert agent.wait(20) == 0
    assert session.wait_closed(10) == 1000


def test_session_checks_run_in_order_before_connect(platform, start_agent):
    start_agent()
    platform.wait_session(timeout=20)
    paths = [r[1] for r in platform.http_requests]
    assert paths[:2] == ["/service-info", "/user"]
    assert paths[2].endswith("/agent/conn-e2e-1/connect")
    assert all(
        r[2].get("authorization") == f"Bearer {TOKEN}" for r in platform.http_requests
    )


def test_session_http_url_refused_before_any_byte(platform, start_agent):
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.5)
    port = listener.getsockname()[1]
    accepted = []

    def accept():
        try:
            conn, _ = listener.accept()
            accepted.append(conn.recv(100))
            conn.close()
        except TimeoutError:
            pass

    watcher = threading.Thread(target=accept)
    watcher.start()
    agent = start_agent("-u", f"http://127.0.0.1:{port}")
    status = agent.wait(20)
    watcher.join()
    listener.close()
    assert status == 2
    assert "only https" in agent.log
    assert accepted == []
    assert TOKEN not in agent.log


def test_session_service_info_5xx_is_retried(platform, start_agent):
    platform.script_status("/service-info", [503, 502])
    start_agent("--reconnect-max", "0.2")
    platform.wait_session(timeout=30)
    assert len(requests_to(platform, "/service-info")) == 3


def test_session_user_5xx_is_retried(platform, start_agent):
    platform.script_status("/user", [500])
    start_agent("--reconnect-max", "0.2")
    platform.wait_session(timeout=30)
    assert len(requests_to(platform, "/user")) == 2


def test_session_service_info_404_exits_2_with_api_hint(platform, start_agent):
    platform.script_status("/service-info", [404])
    agent = start_agent()
    assert agent.wait(20) == 2
    assert f"did you mean {platform.url}/api" in agent.log


def test_session_invalid_token_exits_3(platform, start_agent):
    platform.token = "another-token"
    agent = start_agent()
    assert agent.wait(20) == 3
    assert "access token is not valid" in agent.log
    assert TOKEN not in agent.log


def test_session_old_api_version_exits_3(tmp_path, start_agent, platform):
    platform.api_version = "1.7.9"
    agent = start_agent()
    assert agent.wait(20) == 3
    assert "1.7.9 is older than 1.8" in agent.log


def test_session_newer_api_version_compares_numerically(platform, start_agent):
    platform.api_version = "1.10"
    start_agent()
    platform.wait_session(timeout=20)


def test_session_absent_api_version_is_fine(platform, start_agent):
    platform.api_version = None
    start_agent()
    platform.wait_session(timeout=20)


def test_session_4001_reconnects_at_once_with_fresh_checks(platform, start_agent):
    agent = start_agent(env=TRACE)
    first = platform.wait_session(timeout=20)
    checks_before = len(requests_to(platform, "/user"))
    first.close(4001, "re-authenticate")
    second = platform.wait_session(timeout=10)
    assert len(requests_to(platform, "/user")) == checks_before + 1
    request_id = second.send_command("echo after")
    assert second.wait_response(request_id).output == b"after\n"
    assert agent.proc.poll() is None


def test_session_revoked_token_after_4001_exits_3(platform, start_agent):
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    platform.token = "revoked"
    session.close(4001)
    assert agent.wait(20) == 3
    assert "access token is not valid" in agent.log


def test_session_other_close_reconnects(platform, start_agent):
    agent = start_agent("--reconnect-max", "0.5")
    platform.wait_session(timeout=20).close(1011, "restart")
    platform.wait_session(timeout=10)
    assert "reconnecting" in agent.log


def test_session_dropped_tcp_reconnects(platform, start_agent):
    start_agent("--reconnect-max", "0.5")
    platform.wait_session(timeout=20).abort()
    session = platform.wait_session(timeout=10)
    assert session.wait_response(session.send_command("echo ok")).output == b"ok\n"


def test_session_4000_on_first_connect_exits_4_after_short_wait(platform, start_agent):
    platform.reject_next_with(4000, count=100)
    agent = start_agent("--duplicate-wait", "3", "--reconnect-max", "0.3")
    assert agent.wait(30) == 4
    warning = agent.wait_for(r"WARNING .*another agent seems connected")
    assert "1s" in warning
    assert agent.count("another agent seems connected") == 1
    assert "another agent is connected for user" in agent.log


@pytest.mark.parametrize(
    "frame",
    [
        "not json",
        "[1, 2]",
        '"just a string"',
        "{}",
        '{"@type": "no-such-type"}',
        '{"@type": "command-request"}',
        '{"@type": "command-request", "id": {"x": 1}, "command": "echo"}',
        b"\x00\xff binary garbage",
        "\udcff" if False else '{"@type": "heartbeat", "extra": [1]}',
    ],
)
def test_session_malformed_frame_is_skipped(platform, start_agent, frame):
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    session.send_raw(frame)
    request_id = session.send_command("echo still here")
    assert session.wait_response(request_id).output == b"still here\n"
    assert agent.proc.poll() is None


def test_session_request_without_command_gets_exit_1(platform, start_agent):
    start_agent()
    session = platform.wait_session(timeout=20)
    session.send_json({"@type": "command-request", "id": "no-cmd"})
    response = session.wait_response("no-cmd")
    assert response.exit_status == 1
    assert b"no command" in response.output


def test_session_token_flag_warns_about_process_list(platform, start_agent):
    agent = start_agent("-t", TOKEN, env={"TOWER_ACCESS_TOKEN": ""})
    platform.wait_session(timeout=20)
    assert "process list" in agent.wait_for("WARNING .*-t")
    assert TOKEN not in agent.log


@pytest.mark.parametrize("value", ["abc", "10x", "50ms", "2h", "-1", "PT"])
def test_session_bad_heartbeat_variable_exits_2(platform, start_agent, value):
    agent = start_agent(heartbeat=value)
    assert agent.wait(20) == 2
    assert "TOWER_AGENT_HEARTBEAT" in agent.log


def test_session_missing_work_dir_exits_2(platform, start_agent, tmp_path):
    agent = start_agent("-w", str(tmp_path / "nope"))
    assert agent.wait(20) == 2
    assert "does not exist" in agent.log
    assert not (tmp_path / "nope").exists()


def test_session_no_token_exits_2(platform, start_agent):
    agent = start_agent(env={"TOWER_ACCESS_TOKEN": ""})
    assert agent.wait(20) == 2
    assert "no access token" in agent.log


def test_session_user_from_passwd_when_user_unset(platform, start_agent):
    import os
    import pwd

    start_agent(env={"USER": ""})
    session = platform.wait_session(timeout=20)
    assert session.info["userName"] == pwd.getpwuid(os.getuid()).pw_name


def test_session_sigterm_lets_running_command_finish(platform, start_agent):
    agent = start_agent("--stop-grace", "20")
    session = platform.wait_session(timeout=20)
    running = session.send_command("sleep 1.5; echo finished")
    session.wait_response(session.send_command("true"))
    agent.signal()
    agent.wait_for("stopping")
    refused = session.send_command("echo too late")
    assert session.wait_response(running, timeout=20).output == b"finished\n"
    late = session.wait_response(refused, timeout=10)
    assert late.exit_status == 1
    assert b"stopping" in late.output
    assert agent.wait(20) == 0
    assert session.wait_closed(10) == 1000
