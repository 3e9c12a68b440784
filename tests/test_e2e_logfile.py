"""End to end: --log-file (full dates, size rotation, redaction) and
--audit-log (one JSON line per command, token redacted)."""

import json
import os
import re
import stat

import pytest

from tests.agentproc import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TRACE = {"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": "TRACE"}
FULL_DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} [A-Z]+ - ")


def test_logfile_rotates_keeps_dates_and_hides_the_token(
    platform, start_agent, tmp_path
):
    log_file = tmp_path / "logs" / "agent.log"
    log_file.parent.mkdir()
    agent = start_agent(
        "--log-file",
        str(log_file),
        "--log-max-bytes",
        "2048",
        "--log-keep",
        "2",
        heartbeat="200ms",
        env=TRACE,
    )
    session = platform.wait_session(timeout=20)
    for number in range(12):
        request_id = session.send_command(f"echo {TOKEN} {number} >/dev/null")
        session.wait_response(request_id, timeout=20)
    agent.signal()
    assert agent.wait(20) == 0
    names = sorted(p.name for p in log_file.parent.iterdir())
    assert names == ["agent.log", "agent.log.1", "agent.log.2"]
    for path in log_file.parent.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert TOKEN not in text
        lines = text.splitlines()
        assert lines and all(FULL_DATE.match(line) for line in lines), lines[:3]
    assert "[REDACTED]" in "".join(p.read_text() for p in log_file.parent.iterdir())
    assert TOKEN not in agent.log


def test_logfile_unwritable_path_is_exit_2(platform, start_agent, tmp_path):
    agent = start_agent("--log-file", str(tmp_path / "missing-dir" / "agent.log"))
    assert agent.wait(20) == 2
    assert "cannot open log file" in agent.log


def test_audit_log_one_json_line_per_command_token_redacted(
    platform, start_agent, tmp_path
):
    audit = tmp_path / "audit.jsonl"
    agent = start_agent("--audit-log", str(audit))
    session = platform.wait_session(timeout=20)
    first = session.send_command("printf 12345", id="audit-1")
    session.wait_response(first, timeout=20)
    long_command = f"echo {TOKEN}; exit 3 # " + "x" * 1000
    second = session.send_command(long_command, id="audit-2")
    assert session.wait_response(second, timeout=20).exit_status == 3
    agent.signal()
    assert agent.wait(20) == 0
    text = audit.read_text()
    assert TOKEN not in text
    assert stat.S_IMODE(os.stat(audit).st_mode) == 0o600
    one, two = [json.loads(line) for line in text.splitlines()]
    assert one["id"] == "audit-1" and one["exitStatus"] == 0
    assert one["outputBytes"] == 5 and one["command"] == "printf 12345"
    assert one["seconds"] >= 0 and re.match(r"\d{4}-\d\d-\d\dT", one["time"])
    assert two["exitStatus"] == 3
    assert two["command"].startswith("echo [REDACTED]; exit 3")
    assert len(two["command"]) < 500
