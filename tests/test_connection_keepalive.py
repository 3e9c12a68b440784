"""TCP keepalive and TCP_USER_TIMEOUT on the agent's sockets (issue 3).

Three proofs, from the nearest to the most real: the options read back
from a socket that `open_tls` made; the same options read from the live
session socket of a running agent (a copy of its descriptor, taken with
pidfd_getfd); and, in a network namespace this test creates, a dead peer
with unacknowledged data in flight that fails the agent's kind of socket
after about TCP_USER_TIMEOUT while a plain socket hangs on. A relay cannot
show the last: its kernel keeps acknowledging.
"""

import contextlib
import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from twagent import connection
from twagent.connection import open_tls, parse_endpoint, tls_context

ROOT = Path(__file__).resolve().parent.parent
OPTIONS = {
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
}
# The kernel's syscall number of pidfd_getfd(2), the same on every
# architecture that has the unified table (x86_64, aarch64, ...).
SYS_PIDFD_GETFD = 438
# What the agent sets for a 2 s heartbeat: 3 x 2 s, raised to the 10 s floor.
USER_TIMEOUT_SECONDS = 10.0
# How much longer than that a plain socket is watched to show it hangs.
CONTROL_SECONDS = 10.0


def socket_options(sock):
    return {name: sock.getsockopt(*where) for name, where in OPTIONS.items()}


def expected_options(user_timeout_seconds):
    return {
        "SO_KEEPALIVE": 1,
        "TCP_KEEPIDLE": connection.KEEPIDLE_SECONDS,
        "TCP_KEEPINTVL": connection.KEEPINTVL_SECONDS,
        "TCP_KEEPCNT": connection.KEEPCNT,
        "TCP_USER_TIMEOUT": int(user_timeout_seconds * 1000),
    }


@pytest.mark.timeout(30)
@pytest.mark.parametrize("user_timeout", [10.0, 135.0, 300.0])
def test_keepalive_open_tls_socket_reads_back_options(platform, user_timeout):
    endpoint = parse_endpoint(platform.url)
    context = tls_context(ca_file=platform.ca_file, environ={})
    with open_tls(endpoint, context, user_timeout, {}) as sock:
        assert socket_options(sock) == expected_options(user_timeout)


@pytest.mark.e2e
@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    ("heartbeat", "user_timeout"),
    [("2s", 10.0), ("20s", 60.0), ("45s", 135.0), ("200s", 300.0)],
)
def test_keepalive_agent_session_socket_has_clamped_user_timeout(
    platform, start_agent, heartbeat, user_timeout
):
    agent = start_agent(heartbeat=heartbeat)
    platform.wait_session(timeout=20)
    with session_socket_of(agent.pid, platform.port) as sock:
        options = socket_options(sock)
    print(f"heartbeat {heartbeat}: session socket options {options}")
    assert options == expected_options(user_timeout)


@pytest.mark.timeout(120)
def test_keepalive_dead_peer_in_netns_fails_after_user_timeout():
    result = run_dead_peer_probe(USER_TIMEOUT_SECONDS, CONTROL_SECONDS)
    for name in ("agent-read", "agent-write", "plain-read", "plain-write"):
        print(f"{name}: {result[name]}")
    assert result["options"]["agent-read"] == expected_options(USER_TIMEOUT_SECONDS)
    assert result["options"]["plain-read"]["TCP_USER_TIMEOUT"] == 0

    # The agent's sockets: the kernel gave up after about the set time.
    for name in ("agent-read", "agent-write"):
        failed_after = result[name]["failed_after"]
        assert failed_after is not None, f"{name} hung: {result[name]}"
        assert USER_TIMEOUT_SECONDS - 0.5 <= failed_after <= USER_TIMEOUT_SECONDS + 3
        assert result[name]["tcp_state"] == "CLOSE", result[name]

    # Plain sockets: no error at all for the whole watch.
    for name in ("plain-read", "plain-write"):
        assert result[name]["failed_after"] is None, result[name]
        assert result[name]["watched"] >= USER_TIMEOUT_SECONDS + CONTROL_SECONDS


# Helpers.


@contextlib.contextmanager
def session_socket_of(pid, port):
    """A copy of the agent's one established socket to `port`."""
    sock = socket.socket(fileno=_copy_fd(*_session_fd(pid, port)))
    try:
        yield sock
    finally:
        sock.close()  # the copy only; the agent's stays open


def _session_fd(pid, port):
    """(pid, fd) of the socket; the agent may run under a wrapper."""
    top = psutil.Process(pid)
    found = [
        (proc.pid, c.fd)
        for proc in [top, *top.children(recursive=True)]
        for c in proc.net_connections("tcp")
        if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
    ]
    assert len(found) == 1, f"agent sockets to port {port}: {found}"
    return found[0]


def _copy_fd(pid, fd):
    if not hasattr(os, "pidfd_open"):
        pytest.skip("os.pidfd_open is not available")
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        copy = libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
    finally:
        os.close(pidfd)
    if copy < 0:
        error = ctypes.get_errno()
        pytest.skip(f"pidfd_getfd refused: {os.strerror(error)}")
    return copy


def run_dead_peer_probe(user_timeout, control_seconds):
    """Run tests/deadpeer.py in a fresh network namespace; its JSON."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a network namespace (unshare -n)")
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    command = ["unshare", "--net", "--", sys.executable, "-m", "tests.deadpeer"]
    command += ["--user-timeout", str(user_timeout)]
    command += ["--control-seconds", str(control_seconds)]
    finished = subprocess.run(
        command,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=user_timeout + control_seconds + 60,
        check=False,
    )
    if finished.returncode != 0 and "unshare failed" in finished.stderr:
        pytest.skip(f"cannot create a network namespace: {finished.stderr.strip()}")
    assert finished.returncode == 0, finished.stderr
    return json.loads(finished.stdout.splitlines()[-1])
