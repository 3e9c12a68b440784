"""A dead peer with unacknowledged data in flight, inside a network
namespace: run as `unshare -n python -m tests.deadpeer` (root), never in the
host's own namespace, since it takes the loopback device down.

It opens two TLS connections to a server of its own on 127.0.0.1: one with
the agent's `twagent.connection.open_tls` (keepalive and TCP_USER_TIMEOUT
set), one with a plain socket for control. Then `ip link set lo down`
makes every packet vanish; both write a record that can never be
acknowledged, and the probe measures how long each takes to fail. It
prints one JSON object on standard output. Threads: the main one, and
"deadpeer-server" for the server side of the TLS handshakes.
"""

import argparse
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

import trustme

from twagent.connection import Endpoint, open_tls, tls_context

OPTIONS = {
    "SO_KEEPALIVE": (socket.SOL_SOCKET, socket.SO_KEEPALIVE),
    "TCP_KEEPIDLE": (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    "TCP_KEEPINTVL": (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    "TCP_KEEPCNT": (socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    "TCP_USER_TIMEOUT": (socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
}
RECORD = b"x" * 1000
FLOOD_BYTES = 64 << 20
TCP_STATES = {1: "ESTABLISHED", 7: "CLOSE"}


def socket_options(sock):
    return {name: sock.getsockopt(*where) for name, where in OPTIONS.items()}


class HandshakeServer:
    """Accepts `count` connections and completes their TLS handshakes."""

    def __init__(self, context, count):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.port = self.listener.getsockname()[1]
        self.accepted = []
        self._context = context
        self._count = count
        self._thread = threading.Thread(target=self.run, name="deadpeer-server")
        self._thread.start()

    def run(self):
        for _ in range(self._count):
            raw, _ = self.listener.accept()
            self.accepted.append(self._context.wrap_socket(raw, server_side=True))

    def join(self):
        self._thread.join(10)
        if self._thread.is_alive() or len(self.accepted) != self._count:
            raise RuntimeError("TLS handshakes with the probe server failed")


def connect_all(user_timeout, directory):
    """Two sockets opened as the agent opens them, two plain ones."""
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    ca_file = f"{directory}/ca.pem"
    ca.cert_pem.write_to_path(ca_file)
    client_context = tls_context(ca_file=ca_file, environ={})
    server = HandshakeServer(server_context, 4)
    endpoint = Endpoint("127.0.0.1", server.port, "")
    socks = {}
    for name in ("agent-read", "agent-write"):
        socks[name] = open_tls(endpoint, client_context, user_timeout, {})
    for name in ("plain-read", "plain-write"):
        raw = socket.create_connection(("127.0.0.1", server.port), 10)
        socks[name] = client_context.wrap_socket(raw, server_hostname="127.0.0.1")
    server.join()
    return socks, server


class Probe:
    """One socket's fate after the peer died, on thread "deadpeer-<name>".

    `read` waits for the platform as a session does; otherwise the probe
    writes more than the buffers hold, as a big response does. Either way
    it blocks, watched for `watch_seconds` at most (the control hangs on).
    """

    def __init__(self, name, sock, read, watch_seconds):
        self.name = name
        self.result = {"failed_after": None, "error": None, "errno": None}
        self._sock = sock
        self._read = read
        self._watch = watch_seconds
        self._thread = threading.Thread(target=self.run, name=f"deadpeer-{name}")

    def start(self, started):
        self._started = started
        self._thread.start()

    def run(self):
        # Not select(): the TLS 1.3 session tickets make it readable.
        self._sock.settimeout(self._watch)
        try:
            if self._read:
                data = self._sock.recv(1)
                error, number = f"recv returned {data!r}", None
            else:
                self._sock.sendall(b"y" * FLOOD_BYTES)
                error, number = "sent it all", None
        except TimeoutError:
            return
        except OSError as exc:
            error, number = repr(exc), exc.errno
        self.result["failed_after"] = time.monotonic() - self._started
        self.result["error"] = error
        self.result["errno"] = number
        self.result["tcp_state"] = tcp_state(self._sock)

    def join(self):
        self._thread.join(self._watch + 10)
        self.result["watched"] = self._watch


def tcp_state(sock):
    """The kernel's TCP state name; CLOSE once it gave the connection up."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    return TCP_STATES.get(info[0], str(info[0]))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--user-timeout", type=float, default=10.0)
    parser.add_argument("--control-seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    with tempfile.TemporaryDirectory() as directory:
        socks, server = connect_all(args.user_timeout, directory)
    result = {"options": {name: socket_options(s) for name, s in socks.items()}}

    # From here on no packet reaches anyone: the peer is dead.
    subprocess.run(["ip", "link", "set", "lo", "down"], check=True)
    started = time.monotonic()
    for sock in socks.values():
        # Data in flight that no one will ever acknowledge.
        sock.sendall(RECORD)
    watch = args.user_timeout + args.control_seconds
    probes = [
        Probe(name, sock, name.endswith("read"), watch) for name, sock in socks.items()
    ]
    for probe in probes:
        probe.start(started)
    for probe in probes:
        probe.join()
        result[probe.name] = probe.result
    for sock in (*socks.values(), *server.accepted, server.listener):
        sock.close()
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
