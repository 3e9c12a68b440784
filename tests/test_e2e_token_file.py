"""End to end: --token-file (owner-only, re-read before each reconnect),
and the token kept out of the commands' environment."""

import os

import pytest

from tests.agentproc import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]


def write_token(path, token, mode=0o600):
    path.write_text(token + "\n")
    os.chmod(path, mode)
    return path


@pytest.fixture
def token_file(tmp_path):
    return write_token(tmp_path / "token", TOKEN)


def test_token_file_0600_connects(platform, start_agent, token_file):
    agent = start_agent("--token-file", str(token_file), env={"TOWER_ACCESS_TOKEN": ""})
    session = platform.wait_session(timeout=20)
    assert session.headers["authorization"] == f"Bearer {TOKEN}"
    agent.signal()
    assert agent.wait(20) == 0
    assert TOKEN not in agent.log


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_token_file_readable_by_others_is_refused_with_exit_2(
    platform, start_agent, tmp_path, mode
):
    path = write_token(tmp_path / "token", TOKEN, mode)
    agent = start_agent("--token-file", str(path))
    assert agent.wait(20) == 2
    assert f"{mode:04o}" in agent.log
    assert "chmod 600" in agent.log
    assert TOKEN not in agent.log
    assert not platform.http_requests


def test_token_file_and_flag_together_are_refused(platform, start_agent, token_file):
    agent = start_agent("--token-file", str(token_file), "-t", TOKEN)
    assert agent.wait(20) == 2
    assert "not both" in agent.log


def test_token_file_missing_is_refused_with_exit_2(platform, start_agent, tmp_path):
    agent = start_agent("--token-file", str(tmp_path / "absent"))
    assert agent.wait(20) == 2
    assert "cannot open token file" in agent.log


def test_token_file_rotated_is_used_on_reconnect(platform, start_agent, token_file):
    agent = start_agent("--token-file", str(token_file))
    first = platform.wait_session(timeout=20)
    new_token = "tw-rotated-token-51c0ffee"
    write_token(token_file, new_token)
    platform.token = new_token
    first.close(4001, "re-authenticate")
    second = platform.wait_session(timeout=20)
    assert second.headers["authorization"] == f"Bearer {new_token}"
    agent.wait_for("token in .* changed; using the new one")
    request_id = second.send_command("echo ok")
    assert second.wait_response(request_id, timeout=20).output == b"ok\n"
    agent.signal()
    assert agent.wait(20) == 0
    assert new_token not in agent.log and TOKEN not in agent.log


def test_token_file_loosened_before_reconnect_stops_with_exit_2(
    platform, start_agent, token_file
):
    agent = start_agent("--token-file", str(token_file))
    first = platform.wait_session(timeout=20)
    os.chmod(token_file, 0o644)
    first.close(4001, "re-authenticate")
    assert agent.wait(30) == 2
    assert "chmod 600" in agent.log


@pytest.mark.parametrize("source", ["env", "flag", "file"])
def test_token_never_reaches_a_command_environment(
    platform, start_agent, token_file, source
):
    args = {
        "env": (),
        "flag": ("-t", TOKEN),
        "file": ("--token-file", str(token_file)),
    }[source]
    agent = start_agent(*args)
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("env; cat /proc/$$/environ | tr '\\0' '\\n'")
    output = session.wait_response(request_id, timeout=20).output
    assert TOKEN.encode() not in output
    assert b"TOWER_ACCESS_TOKEN" not in output
    assert b"PATH=" in output
    agent.signal()
    assert agent.wait(20) == 0
