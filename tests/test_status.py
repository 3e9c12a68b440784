import io
import json
import os
import socket
import stat
import threading
import time

import pytest

from twagent import status
from twagent.errors import DuplicateAgentError

HOST = socket.gethostname()


def record(**fields):
    base = {"pid": 4242, "host": "node-b", "updated": time.time(), "nonce": "n1"}
    base.update(fields)
    return base


def place(directory, connection_id, data):
    os.makedirs(directory, exist_ok=True)
    path = status.status_path(str(directory), connection_id)
    with open(path, "w") as stream:
        json.dump(data, stream)
    return path


def test_status_staleness_fresh_other_host_is_live():
    assert status.staleness(record(), host=HOST) is None


def test_status_staleness_not_refreshed_is_stale():
    why = status.staleness(record(updated=time.time() - 61), host=HOST)
    assert why.startswith("not refreshed for")


def test_status_staleness_same_host_dead_pid_is_stale():
    why = status.staleness(record(host=HOST, pid=2**22 + 12345), host=HOST)
    assert why == f"pid {2**22 + 12345} is gone"


def test_status_staleness_garbage_is_stale():
    assert status.staleness({"updated": "x"}) is not None


def test_status_path_keeps_odd_ids_inside_the_directory(tmp_path):
    path = status.status_path(str(tmp_path), "../../etc/x y")
    assert os.path.dirname(path) == str(tmp_path)


def test_status_acquire_creates_private_file_and_release_removes_it(tmp_path):
    lease = status.StatusFile(str(tmp_path / "st"), "c1", {"version": "t"})
    lease.acquire({"state": "connecting"})
    mode = stat.S_IMODE(os.stat(lease.path).st_mode)
    assert mode == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "st").st_mode) == 0o700
    data = status.read_record(lease.path)
    assert data["pid"] == os.getpid() and data["state"] == "connecting"
    lease.release()
    assert not os.path.exists(lease.path)
    assert os.listdir(tmp_path / "st") == []


def test_status_acquire_refuses_a_live_holder_naming_host_and_pid(tmp_path):
    place(tmp_path, "c1", record())
    lease = status.StatusFile(str(tmp_path), "c1", {})
    with pytest.raises(DuplicateAgentError, match="pid 4242 on host node-b") as caught:
        lease.acquire()
    assert caught.value.exit_status == 4


def test_status_acquire_takes_over_a_stale_lease_with_warning(tmp_path, caplog):
    place(tmp_path, "c1", record(updated=time.time() - 300))
    lease = status.StatusFile(str(tmp_path), "c1", {})
    lease.acquire()
    assert status.read_record(lease.path)["nonce"] == lease.nonce
    assert "taking over the stale lease" in caplog.text
    assert sorted(os.listdir(tmp_path)) == ["c1.json"]


def test_status_acquire_unreadable_fresh_file_is_refused(tmp_path):
    path = status.status_path(str(tmp_path), "c1")
    with open(path, "w") as stream:
        stream.write("{half")
    with pytest.raises(DuplicateAgentError):
        status.StatusFile(str(tmp_path), "c1", {}).acquire()


def test_status_release_leaves_someone_elses_file(tmp_path):
    lease = status.StatusFile(str(tmp_path), "c1", {})
    lease.acquire()
    place(tmp_path, "c1", record(nonce="other"))
    lease.release()
    assert status.read_record(lease.path)["nonce"] == "other"


def test_status_writer_stops_writing_once_the_lease_is_taken(tmp_path, caplog):
    lease = status.StatusFile(str(tmp_path), "c1", {})
    lease.acquire()
    writer = status.StatusWriter(lease, lambda: {"state": "connected"}, interval=60)
    writer.write_now()
    assert status.read_record(lease.path)["state"] == "connected"
    place(tmp_path, "c1", record(nonce="other"))
    writer.write_now()
    assert status.read_record(lease.path)["nonce"] == "other"
    assert "no longer updating it" in caplog.text


def test_status_writer_thread_starts_and_stops(tmp_path):
    lease = status.StatusFile(str(tmp_path), "c1", {})
    lease.acquire()
    writer = status.StatusWriter(lease, lambda: {"state": "connected"}, interval=0.05)
    writer.start()
    writer.changed()
    deadline = time.monotonic() + 5
    pause = threading.Event()
    while "state" not in status.read_record(lease.path):
        assert time.monotonic() < deadline, "the status thread never wrote"
        pause.wait(0.01)
    writer.stop()
    assert status.read_record(lease.path)["state"] == "connected"


def test_status_report_exit_status(tmp_path):
    out = io.StringIO()
    assert status.report(str(tmp_path / "none"), out=out) == 1
    place(tmp_path, "c1", record(state="connected"))
    assert status.report(str(tmp_path), out=out) == 0
    place(tmp_path, "c2", record(state="connecting"))
    assert status.report(str(tmp_path), out=out) == 1
    assert status.report(str(tmp_path), ["c1"], out=out) == 0
    assert "c2: connecting since" in out.getvalue()
