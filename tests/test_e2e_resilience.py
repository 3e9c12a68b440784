"""End to end: signals, repeats, timeouts, detached children, faults."""

import os
import signal
import sys

import pytest

from tests.agentproc import CONNECTION_ID, AgentProcess, agent_env

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

HERE = os.path.dirname(os.path.abspath(__file__))


def pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"


def test_resilience_second_signal_cancels_and_exits_143(platform, start_agent):
    agent = start_agent("--stop-grace", "60")
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("echo $$; exec sleep 60")
    agent.wait_for(f"command {request_id} started")
    agent.signal(signal.SIGTERM)
    agent.wait_for("stopping")
    agent.signal(signal.SIGTERM)
    assert agent.wait(20) == 143
    assert "cancelling running commands" in agent.log


def test_resilience_second_sigint_exits_130(platform, start_agent):
    agent = start_agent("--stop-grace", "60")
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("sleep 60")
    agent.wait_for(f"command {request_id} started")
    agent.signal(signal.SIGINT)
    agent.wait_for("stopping")
    agent.signal(signal.SIGINT)
    assert agent.wait(20) == 130


def test_resilience_stop_grace_spent_cancels_and_answers(platform, start_agent):
    agent = start_agent("--stop-grace", "1")
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("sleep 60")
    agent.wait_for(f"command {request_id} started")
    agent.signal(signal.SIGTERM)
    assert agent.wait(30) == 0
    assert session.wait_response(request_id, timeout=5).exit_status == 143
    assert "stop grace spent" in agent.log


def test_resilience_sighup_is_ignored(platform, start_agent):
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    agent.signal(signal.SIGHUP)
    agent.wait_for("SIGHUP ignored")
    assert session.wait_response(session.send_command("echo up")).output == b"up\n"
    assert agent.proc.poll() is None


def test_resilience_repeated_id_runs_once(platform, start_agent, work_dir):
    start_agent()
    session = platform.wait_session(timeout=20)
    command = "echo ran >> runs.txt; echo answer"
    session.send_command(command, id="same")
    first = session.wait_response("same")
    # A round trip after the answer: the pong that confirms it is read by
    # the agent before the repeat, so the repeat is a real second ask.
    session.wait_response(session.send_command("true"))
    session.send_command(command, id="same")
    assert len(session.wait_responses("same", 2)) == 2
    assert session.responses["same"][1].output == first.output == b"answer\n"
    assert (work_dir / "runs.txt").read_text() == "ran\n"


def test_resilience_repeat_while_running_is_answered_once(platform, start_agent):
    start_agent()
    session = platform.wait_session(timeout=20)
    session.send_command("sleep 1; echo once", id="dup")
    session.send_command("sleep 1; echo once", id="dup")
    assert session.wait_response("dup").output == b"once\n"
    session.wait_response(session.send_command("true"))
    assert len(session.responses["dup"]) == 1


def test_resilience_command_timeout_reports_124(platform, start_agent):
    start_agent("--command-timeout", "1")
    session = platform.wait_session(timeout=20)
    response = session.wait_response(session.send_command("echo start; sleep 60"), 20)
    assert response.exit_status == 124
    assert response.output.startswith(b"start\n")
    assert b"timed out after 1s" in response.output


def test_resilience_detached_child_does_not_hold_the_answer(platform, start_agent):
    start_agent()
    session = platform.wait_session(timeout=20)
    response = session.wait_response(session.send_command("sleep 30 & echo $!"), 10)
    child = int(response.output.split()[0])
    try:
        assert response.exit_status == 0
        assert pid_alive(child)
    finally:
        os.kill(child, signal.SIGKILL)


def test_resilience_4000_after_a_session_waits_the_full_window(platform, start_agent):
    agent = start_agent("--duplicate-wait", "4", "--reconnect-max", "0.3")
    session = platform.wait_session(timeout=20)
    platform.reject_next_with(4000, count=1000)
    session.abort()
    assert agent.wait(40) == 4
    assert "retrying for up to 4s" in agent.log


def test_resilience_4000_then_accepted_carries_on(platform, start_agent):
    platform.reject_next_with(4000, count=2)
    agent = start_agent("--duplicate-wait", "30", "--reconnect-max", "0.3")
    for _ in range(2):
        platform.wait_session(timeout=20)
    session = platform.wait_session(timeout=20)
    assert session.wait_response(session.send_command("echo ok")).output == b"ok\n"
    assert agent.count("another agent seems connected") == 1


def test_resilience_response_of_command_running_at_drop_arrives_later(
    platform, start_agent
):
    start_agent("--reconnect-max", "0.3")
    first = platform.wait_session(timeout=20)
    request_id = first.send_command("sleep 1.5; echo late")
    first.abort()
    platform.wait_session(timeout=20)
    assert platform.wait_response(request_id, timeout=20).output == b"late\n"


@pytest.fixture
def run_faulty(platform, tmp_path, work_dir):
    started = []

    def start(mode):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        env = agent_env(platform, home, "300ms")
        env["PYTHONPATH"] = os.path.dirname(HERE)
        script = [sys.executable, os.path.join(HERE, "faulty_agent.py"), mode]
        proc = AgentProcess([CONNECTION_ID, "-w", str(work_dir)], env, prefix=script)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


def test_resilience_failing_send_exits_1_with_one_traceback(platform, run_faulty):
    agent = run_faulty("send")
    platform.wait_session(timeout=20)
    assert agent.wait(20) == 1
    assert agent.count(r"^\d\d:\d\d:\d\d\.\d{3} ERROR") == 1
    assert "Traceback" in agent.log
    assert "injected send failure" in agent.log


def test_resilience_failing_heartbeat_tick_is_logged_and_ticks_go_on(
    platform, run_faulty
):
    agent = run_faulty("heartbeat")
    session = platform.wait_session(timeout=20)
    session.wait_heartbeats(3, timeout=10)
    assert agent.log.count("Traceback") == 1
    assert "injected heartbeat failure" in agent.log
    assert agent.proc.poll() is None


def test_resilience_failing_worker_answers_and_pool_goes_on(platform, run_faulty):
    agent = run_faulty("worker")
    session = platform.wait_session(timeout=20)
    broken = session.wait_response(session.send_command("boom"))
    assert broken.exit_status == 1
    assert b"internal error" in broken.output
    assert session.wait_response(session.send_command("echo fine")).output == b"fine\n"
    assert agent.log.count("Traceback") == 1


def test_resilience_stop_offline_exits_when_last_command_ends(platform, start_agent):
    # Answers that finish offline pile up in the outbox, and only the first
    # into an empty outbox wakes the main thread: the end of the last
    # command must wake it all the same, well before the grace or the
    # next heartbeat (both far off here).
    agent = start_agent("--stop-grace", "60", heartbeat="60s")
    session = platform.wait_session(timeout=20)
    first = session.send_command("sleep 1; echo one")
    last = session.send_command("sleep 3; echo two")
    agent.wait_for(f"command {last} started")
    platform.stop()
    agent.wait_for("reconnecting")
    agent.signal(signal.SIGTERM)
    agent.wait_for(f"command {first} finished")
    assert agent.wait(15) == 0
    assert agent.count(f"command {last} finished") == 1
    assert "stopped while not connected" in agent.log
