"""End to end: commands through the fixture platform, byte-exact."""

import re

import pytest

from tests.agentproc import TOKEN

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

MAX_OUTPUT_BYTES = 10485760 - 100


@pytest.fixture
def session(platform, start_agent):
    agent = start_agent(env={"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": "TRACE"})
    s = platform.wait_session(timeout=20)
    s.agent = agent
    return s


def run(session, command, timeout=30):
    return session.wait_response(session.send_command(command), timeout)


def test_command_exact_bytes_are_preserved(session):
    script = r"printf 'a\000b\r\nc\rd\n\377\376 end'"
    response = run(session, script)
    assert response.output == b"a\x00b\r\nc\rd\n\xff\xfe end"
    assert response.exit_status == 0


def test_command_empty_output_adds_nothing(session):
    response = run(session, "true")
    assert response.output == b""
    assert response.raw["result"] == ""


def test_command_stderr_merged_in_written_order(session):
    response = run(session, "echo 1; echo 2 >&2; echo 3; echo 4 >&2")
    assert response.output == b"1\n2\n3\n4\n"


def test_command_exit_status_is_the_shell_status(session):
    assert run(session, "exit 7").exit_status == 7
    assert run(session, "false").exit_status == 1


def test_command_killed_by_signal_reports_128_plus_n(session):
    assert run(session, "kill -TERM $$").exit_status == 143
    assert run(session, "kill -KILL $$").exit_status == 137


def test_command_runs_in_work_dir_with_null_stdin(session, work_dir):
    response = run(session, "pwd; cat; echo done")
    assert response.output == f"{work_dir}\ndone\n".encode()


def test_command_child_gets_own_session_and_default_signals(session):
    response = run(
        session, "ps -o pid=,pgid=,sid= -p $$; grep -E 'SigIgn' /proc/$$/status"
    )
    pid, pgid, sid = response.output.split(b"\n")[0].split()
    assert pid == pgid == sid
    ignored = int(response.output.split(b"SigIgn:")[1].split()[0], 16)
    sigint, sigquit = 2, 3
    assert not ignored & (1 << (sigint - 1))
    assert not ignored & (1 << (sigquit - 1))


def test_command_environment_lacks_the_token(platform, start_agent):
    agent = start_agent(env={"COPY_OF_TOKEN": f"x{TOKEN}x", "HARMLESS": "1"})
    session = platform.wait_session(timeout=20)
    response = run(session, "env; cat /proc/$$/cmdline")
    assert TOKEN.encode() not in response.output
    assert b"TOWER_ACCESS_TOKEN" not in response.output
    assert b"COPY_OF_TOKEN" not in response.output
    assert b"HARMLESS=1" in response.output
    assert agent.proc.poll() is None


def test_command_fast_answered_while_slow_runs(session):
    slow = session.send_command("sleep 20; echo slow")
    fast = session.send_command("echo fast")
    response = session.wait_response(fast, timeout=10)
    assert response.output == b"fast\n"
    assert slow not in session.responses


def test_command_heartbeats_continue_while_commands_run(session):
    session.send_command("sleep 8")
    before = session.heartbeats
    session.wait_heartbeats(before + 2, timeout=10)


def test_command_output_over_cap_is_truncated_with_warning(session):
    response = run(session, "head -c 12000000 /dev/zero | tr '\\0' 'x'", timeout=60)
    assert len(response.output) == MAX_OUTPUT_BYTES
    assert response.output == b"x" * MAX_OUTPUT_BYTES
    assert response.exit_status == 0
    line = session.agent.wait_for(r"WARNING .*truncated")
    assert response.id in line


def test_command_300mb_output_keeps_agent_rss_bounded(session):
    response = run(session, "head -c 300000000 /dev/zero; echo tail", timeout=120)
    assert len(response.output) == MAX_OUTPUT_BYTES
    assert response.exit_status == 0
    peak_kib = session.agent.peak_rss_kib()
    print(f"agent peak RSS after a 300 MB output: {peak_kib / 1024:.1f} MiB")
    assert peak_kib < 150 * 1024


def test_command_that_cannot_start_gets_exit_1_and_reason(session, work_dir):
    work_dir.rmdir()
    response = run(session, "echo never")
    assert response.exit_status == 1
    assert b"cannot start" in response.output
    work_dir.mkdir()
    assert run(session, "echo again").output == b"again\n"


def test_command_every_request_gets_one_response(session):
    ids = [session.send_command(f"echo {n}") for n in range(50)]
    for n, request_id in enumerate(ids):
        assert session.wait_response(request_id).output == f"{n}\n".encode()
    assert all(len(session.responses[i]) == 1 for i in ids)


def test_command_trace_log_names_ids_and_never_the_token(session):
    request_id = session.send_command(f"echo {TOKEN} | wc -c")
    session.wait_response(request_id)
    line = session.agent.wait_for(rf"command {request_id} finished: exit 0")
    assert re.match(r"^\d\d:\d\d:\d\d\.\d{3} INFO - ", line)
    session.agent.wait_for(rf"DEBUG - command {request_id}: echo")
    session.agent.signal()
    session.agent.wait(20)
    assert TOKEN not in session.agent.log
