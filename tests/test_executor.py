import gc
import os
import signal
import threading
import time

import psutil
import pytest

from twagent import executor
from twagent.executor import Executor, child_environment
from twagent.messages import CommandRequest

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def runner(tmp_path):
    pool = Executor(str(tmp_path), dict(os.environ), 2, 30.0, ["sh", "-c"])
    yield pool
    pool.cancel()
    pool.shutdown()


def run(pool, command):
    return pool.run(CommandRequest("r1", command))


def test_executor_exit_status_maps_signals_like_a_shell():
    assert executor.exit_status(0) == 0
    assert executor.exit_status(3) == 3
    assert executor.exit_status(-signal.SIGKILL) == 137
    assert executor.exit_status(-signal.SIGTERM) == 143


def test_executor_output_bytes_are_exact(runner):
    response = run(runner, r"printf '\000\r\n\377x'; printf 'e' >&2")
    assert bytes(response.output) == b"\x00\r\n\xffxe"


def test_executor_environment_drops_token_holders():
    env = {"A": "1", "TOWER_ACCESS_TOKEN": "s3cret", "B": "pre-s3cret-post", "C": "2"}
    assert child_environment(env, ["s3cret"]) == {"A": "1", "C": "2"}


def test_executor_unstartable_command_is_exit_1(tmp_path):
    pool = Executor(str(tmp_path / "gone"), {}, 1, 30.0, ["sh", "-c"])
    response = run(pool, "true")
    pool.shutdown()
    assert response.exit_status == 1
    assert b"cannot start" in response.output


def test_executor_background_child_does_not_hold_the_answer(runner):
    started = time.monotonic()
    response = run(runner, "sleep 30 & echo $!")
    elapsed = time.monotonic() - started
    child = int(response.output.split()[0])
    try:
        assert elapsed < executor.DRAIN_SECONDS + 2
        assert response.exit_status == 0
        os.kill(child, 0)  # still running
    finally:
        os.kill(child, signal.SIGKILL)


def test_executor_timeout_kills_group_and_reports_124(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "KILL_GRACE_SECONDS", 0.5)
    pool = Executor(str(tmp_path), dict(os.environ), 1, 0.5, ["sh", "-c"])
    started = time.monotonic()
    response = run(pool, "echo begun; sleep 30 & sleep 30; echo never")
    pool.shutdown()
    assert time.monotonic() - started < 5
    assert response.exit_status == 124
    assert response.output.startswith(b"begun\n")
    assert b"timed out" in response.output
    assert b"never" not in response.output


def test_executor_timeout_kills_a_child_that_ignores_term(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "KILL_GRACE_SECONDS", 0.3)
    pool = Executor(str(tmp_path), dict(os.environ), 1, 0.3, ["sh", "-c"])
    response = run(pool, "trap '' TERM; sleep 30")
    pool.shutdown()
    assert response.exit_status == 124


def test_executor_cancel_ends_running_commands(tmp_path):
    pool = Executor(str(tmp_path), dict(os.environ), 2, 60.0, ["sh", "-c"])
    fifo = tmp_path / "started"
    os.mkfifo(fifo)
    done = []
    pool.submit(CommandRequest("long", f"echo up > {fifo}; sleep 30"), done.append)
    with open(fifo) as f:  # blocks until the shell runs
        assert f.read() == "up\n"
    assert pool.running_ids() == ["long"]
    pool.cancel()
    pool.shutdown()
    assert done[0].id == "long"
    assert done[0].exit_status == 143


def test_executor_output_reader_caps_and_counts(tmp_path):
    read_fd, write_fd = os.pipe()
    reader = executor.OutputReader(read_fd)
    os.write(write_fd, b"abc")
    os.close(write_fd)
    reader.read_for(1.0)
    assert reader.eof
    assert bytes(reader.data()) == b"abc"
    assert reader.total == 3
    os.close(read_fd)


def test_executor_nul_in_command_is_exit_1_not_a_crash(runner):
    response = run(runner, "echo a\x00b")
    assert response.exit_status == 1
    assert b"cannot start" in response.output


def test_executor_inherits_the_cleaned_process_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOWER_ACCESS_TOKEN", "s3cret-token")
    monkeypatch.setenv("COPY_OF_TOKEN", "x-s3cret-token-x")
    monkeypatch.setenv("HARMLESS", "1")
    executor.clean_process_environment(["s3cret-token"])
    assert "TOWER_ACCESS_TOKEN" not in os.environ
    assert "COPY_OF_TOKEN" not in os.environ
    pool = Executor(str(tmp_path), None, 1, 30.0, ["sh", "-c"])
    try:
        output = bytes(run(pool, "env").output)
    finally:
        pool.shutdown()
    assert b"HARMLESS=1\n" in output
    assert b"s3cret-token" not in output


def test_executor_keeps_no_descriptor_per_command(tmp_path):
    pool = Executor(str(tmp_path), None, 1, 30.0, ["sh", "-c"])
    try:
        run(pool, "true")
        gc.collect()
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            assert bytes(run(pool, "cat; echo ok").output) == b"ok\n"
        # At most: an unrelated fd may be closed meanwhile (garbage collection).
        assert len(os.listdir("/proc/self/fd")) <= before
    finally:
        pool.shutdown()


def test_executor_command_is_active_until_its_answer_is_queued(tmp_path):
    seen, done = [], threading.Event()

    def after_command(idle):
        seen.append(("after", pool.active(), idle))
        done.set()

    def on_done(response):
        seen.append((response.id, pool.active()))

    pool = Executor(str(tmp_path), None, 1, 30.0, ["sh", "-c"], after_command)
    try:
        pool.submit(CommandRequest("r1", "true"), on_done)
        assert done.wait(10)
        assert seen == [("r1", 1), ("after", 0, True)]
    finally:
        pool.shutdown()


def test_executor_output_pipe_closed_when_reading_fails(tmp_path, monkeypatch):
    pool = Executor(str(tmp_path), None, 1, 30.0, ["sh", "-c"])

    def broken(self, seconds):
        raise ValueError("injected read failure")

    try:
        run(pool, "true")
        gc.collect()
        before = len(os.listdir("/proc/self/fd"))
        monkeypatch.setattr(executor.OutputReader, "read_for", broken)
        for _ in range(3):
            with pytest.raises(ValueError):
                run(pool, "sleep 30")
        # At most: an unrelated fd may be closed meanwhile (garbage collection).
        assert len(os.listdir("/proc/self/fd")) <= before
        # The commands were ended and reaped, not left running or zombies.
        assert not psutil.Process().children()
    finally:
        pool.shutdown()
