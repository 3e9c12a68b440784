"""Tests of the test relay itself, on plain TCP sockets.

The test thread holds both ends: the client socket it connects to the
relay, and the server socket it accepts from the relay's target, so no
other thread than the relay's runs.
"""

import select
import socket
import time

import pytest

from tests.relay import Relay

pytestmark = pytest.mark.timeout(30)

# How long a silent socket is watched to show that nothing arrives.
SILENCE_SECONDS = 0.5


@pytest.fixture
def target():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.settimeout(5)
        yield listener


@pytest.fixture
def relay(target):
    with Relay(target.getsockname()) as relay:
        yield relay


def connect(relay, target):
    """A client through the relay, and the target's side of it."""
    client = socket.create_connection(("127.0.0.1", relay.port), timeout=5)
    server, _ = target.accept()
    server.settimeout(5)
    return client, server


def receive(sock, size):
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            break
        data += chunk
    return data


def silent(sock, seconds=SILENCE_SECONDS):
    readable, _, _ = select.select([sock], [], [], seconds)
    return not readable


def test_relay_forwards_both_ways_and_counts(relay, target):
    client, server = connect(relay, target)
    with client, server:
        client.sendall(b"ping")
        assert receive(server, 4) == b"ping"
        server.sendall(b"pong")
        assert receive(client, 4) == b"pong"
        assert (relay.accepted, relay.live, relay.frozen) == (1, 1, 0)


def test_relay_freeze_stops_both_ways_without_close_then_thaw_delivers(relay, target):
    client, server = connect(relay, target)
    with client, server:
        assert relay.freeze() == 1
        client.sendall(b"up")
        server.sendall(b"down")
        assert silent(server) and silent(client)
        assert relay.live == 1 and relay.frozen == 1
        assert relay.thaw() == 1
        assert receive(server, 2) == b"up"
        assert receive(client, 4) == b"down"


def test_relay_frozen_link_keeps_acknowledging_until_buffers_fill(relay, target):
    client, server = connect(relay, target)
    with client, server:
        relay.freeze()
        client.setblocking(False)
        sent = 0
        try:
            while sent < 64 << 20:
                sent += client.send(b"x" * 65536)
        except BlockingIOError:
            pass
        # The relay's kernel took some, then the window closed: no error.
        assert 0 < sent < 64 << 20
        assert silent(server)


def test_relay_new_connection_forwarded_while_old_frozen(relay, target):
    old_client, old_server = connect(relay, target)
    relay.freeze()
    new_client, new_server = connect(relay, target)
    with old_client, old_server, new_client, new_server:
        new_client.sendall(b"new")
        assert receive(new_server, 3) == b"new"
        old_client.sendall(b"old")
        assert silent(old_server)
        assert (relay.accepted, relay.frozen) == (2, 1)


def test_relay_freeze_new_connections_freezes_later_ones(relay, target):
    relay.freeze(new_connections=True)
    client, server = connect(relay, target)
    with client, server:
        client.sendall(b"held")
        assert silent(server)
        relay.thaw()
        assert receive(server, 4) == b"held"


def test_relay_drop_all_closes_with_fin(relay, target):
    client, server = connect(relay, target)
    with client, server:
        relay.freeze()
        assert relay.drop_all() == 1
        assert client.recv(10) == b""
        assert server.recv(10) == b""
        assert relay.live == 0


def test_relay_drop_all_reset_sends_rst(relay, target):
    client, server = connect(relay, target)
    with client, server:
        relay.drop_all(reset=True)
        with pytest.raises(ConnectionResetError):
            client.recv(10)


def test_relay_close_after_data_delivers_data_then_eof(relay, target):
    client, server = connect(relay, target)
    with client:
        server.sendall(b"last words")
        server.close()
        assert receive(client, 100) == b"last words"
        assert client.recv(10) == b""


def test_relay_freeze_when_quiet_waits_for_silence(relay, target):
    client, server = connect(relay, target)
    with client, server:
        client.sendall(b"x")
        assert receive(server, 1) == b"x"
        start = time.monotonic()
        frozen_at = relay.freeze_when_quiet(0.3)
        assert frozen_at - start >= 0.25
        assert relay.frozen == 1
