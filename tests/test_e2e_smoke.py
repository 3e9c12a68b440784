"""The thinnest end to end: connect, send info, answer one real command."""

import getpass
import os

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


def test_agent_connects_and_answers_echo(platform, start_agent, work_dir):
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    assert session.info["@type"] == "info"
    assert session.info["workDir"] == os.path.abspath(str(work_dir))
    assert session.info["userName"] == getpass.getuser()
    assert session.info["agentVersion"]
    request_id = session.send_command("echo hello; pwd")
    response = session.wait_response(request_id, timeout=20)
    assert response.exit_status == 0
    assert response.output == b"hello\n" + str(work_dir).encode() + b"\n"
    agent.signal()
    assert agent.wait(20) == 0
