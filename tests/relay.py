"""A TCP relay for tests: forwards bytes between the agent and the fixture
platform on 127.0.0.1, and can freeze, thaw or drop the live connections.

One thread, "test-relay-<port>", runs `run()`: a select() loop over the
listening socket, a wake-up pipe and every connection's two non-blocking
sockets. It alone touches the sockets and the `Link` records. The test
thread acts through `_call()`, which queues a function for the loop, wakes
it through the pipe and waits for it to be done; so when `freeze()`
returns, not one more byte moves on the frozen connections.

`_changed`, a Condition, guards the counters and the queue: the loop
thread notifies it on every accept and every close, the wait_* methods
wait on it. TLS passes through untouched, so the platform's certificate
(which covers 127.0.0.1) still verifies.
"""

from __future__ import annotations

import collections
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Callable
from typing import Any, Self

CHUNK_BYTES = 64 * 1024
# Stop reading a side while this much waits to be written to the other.
BUFFER_LIMIT_BYTES = 256 * 1024
CONNECT_TIMEOUT_SECONDS = 5.0
CALL_TIMEOUT_SECONDS = 10.0
JOIN_SECONDS = 10.0
CLIENT, UPSTREAM = 0, 1


class Link:
    """One relayed connection: the accepted socket and the one upstream.

    `pending[side]` holds bytes read from `side`, to be written to the
    other; `eof[side]` is set once `side` has sent its FIN.
    """

    def __init__(self, number: int, client: socket.socket, upstream: socket.socket):
        self.number = number
        self.socks = (client, upstream)
        self.pending = (bytearray(), bytearray())
        self.eof = [False, False]
        self.shut = [False, False]
        self.frozen = False
        self.closed = False
        self.bytes_up = 0
        self.bytes_down = 0
        self.opened_at = time.monotonic()
        self.last_moved_at = self.opened_at

    def __repr__(self) -> str:
        state = "closed" if self.closed else "frozen" if self.frozen else "live"
        return f"<Link {self.number} {state} up={self.bytes_up} down={self.bytes_down}>"

    def count(self, side: int, size: int) -> None:
        if side == CLIENT:
            self.bytes_up += size
        else:
            self.bytes_down += size
        self.last_moved_at = time.monotonic()


class Relay:
    """Listen on `host`, port 0, and forward each connection to `target`.

    freeze() stops every live connection both ways: nothing is read or
    written any more, nothing is closed or reset, so the kernel keeps
    acknowledging until the buffers fill, like a link that went silent.
    New connections are still accepted and forwarded, unless freeze() was
    told `new_connections=True`. thaw() lets everything move again;
    drop_all() closes the connections (with an RST when `reset`).
    """

    def __init__(self, target: tuple[str, int], host: str = "127.0.0.1") -> None:
        self.target = target
        self.host = host
        self.port: int | None = None
        self.accepted = 0
        self.refused = 0
        self.links: list[Link] = []
        self._changed = threading.Condition()
        self._calls: collections.deque = collections.deque()
        self._freeze_new = False
        # (quiet seconds, new_connections, done Event, [freeze time])
        self._quiet_freeze: tuple | None = None
        self._stopping = False
        self._failure: BaseException | None = None
        self._listener: socket.socket | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        """An https URL for the agent that leads through the relay."""
        return f"https://{self.host}:{self.port}"

    @property
    def live(self) -> int:
        """Connections not closed yet, frozen ones included."""
        with self._changed:
            return sum(1 for link in self.links if not link.closed)

    @property
    def frozen(self) -> int:
        with self._changed:
            return sum(1 for link in self.links if link.frozen and not link.closed)

    # Starting and stopping (test thread).

    def start(self) -> Self:
        self._listener = socket.create_server((self.host, 0))
        self._listener.setblocking(False)
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self.run, name=f"test-relay-{self.port}")
        self._thread.start()
        return self

    def close(self) -> None:
        """Close every connection and the listener; join the thread."""
        if self._thread is None:
            return
        with self._changed:
            self._stopping = True
        self._wake()
        self._thread.join(JOIN_SECONDS)
        alive = self._thread.is_alive()
        self._thread = None
        os.close(self._wake_r)
        os.close(self._wake_w)
        if alive:
            raise AssertionError("relay thread still alive after close()")
        if self._failure is not None:
            raise AssertionError("relay loop failed") from self._failure

    # Controls (test thread); each returns once the loop has done it.

    def freeze(self, new_connections: bool = False) -> int:
        """Stop forwarding on every live connection; how many were frozen."""

        def act() -> int:
            self._freeze_new = new_connections
            live = [link for link in self.links if not link.closed]
            for link in live:
                link.frozen = True
            return len(live)

        return self._call(act)

    def thaw(self) -> int:
        """Forward again on every frozen connection; how many were thawed."""

        def act() -> int:
            self._freeze_new = False
            frozen = [link for link in self.links if link.frozen and not link.closed]
            for link in frozen:
                link.frozen = False
            return len(frozen)

        return self._call(act)

    def freeze_when_quiet(
        self, quiet_seconds: float, new_connections: bool = False, timeout: float = 10
    ) -> float:
        """Freeze as soon as no byte has moved for `quiet_seconds` on any
        live connection; returns the time.monotonic() of the freeze.

        Right after the agent got its heartbeat answer, this freezes a link
        at the worst moment: the agent's silence clock has just restarted.
        """
        done = threading.Event()
        stamp: list[float] = []

        def arm() -> None:
            self._quiet_freeze = (quiet_seconds, new_connections, done, stamp)

        self._call(arm)
        if not done.wait(timeout):
            self._call(self._disarm)
            raise AssertionError(f"relay never quiet for {quiet_seconds}s")
        return stamp[0]

    def drop_all(self, reset: bool = False) -> int:
        """Close every live connection, frozen or not; how many were closed."""

        def act() -> int:
            live = [link for link in self.links if not link.closed]
            for link in live:
                self._close_link(link, reset)
            return len(live)

        return self._call(act)

    # Waiting (test thread).

    def wait_accepted(self, count: int, timeout: float = 10) -> int:
        """Wait until `count` connections were accepted in all."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.accepted >= count, timeout):
                raise AssertionError(
                    f"relay accepted {self.accepted} connections in {timeout}s, "
                    f"expected {count}"
                )
            return self.accepted

    # The loop (relay thread).

    def run(self) -> None:
        try:
            while not self._stopping:
                self._run_calls()
                readers, writers = self._interest()
                timeout = self._quiet_timeout()
                readable, writable, _ = select.select(readers, writers, [], timeout)
                self._serve(readable, writable)
                self._check_quiet()
        except BaseException as exc:
            self._failure = exc
            raise
        finally:
            self._shut_down()

    def _interest(self) -> tuple[list, list]:
        readers: list = [self._wake_r, self._listener]
        writers: list = []
        for link in self.links:
            if link.closed or link.frozen:
                continue
            for side in (CLIENT, UPSTREAM):
                waiting = link.pending[side]
                if not link.eof[side] and len(waiting) < BUFFER_LIMIT_BYTES:
                    readers.append(link.socks[side])
                if waiting:
                    writers.append(link.socks[1 - side])
        return readers, writers

    def _serve(self, readable: list, writable: list) -> None:
        if self._wake_r in readable:
            self._drain_wakeups()
        if self._listener in readable:
            self._accept()
        for link in list(self.links):
            if link.closed or link.frozen:
                continue
            try:
                for side in (CLIENT, UPSTREAM):
                    if link.socks[side] in readable:
                        self._read(link, side)
                    if link.socks[1 - side] in writable:
                        self._write(link, side)
                self._finish_half_closes(link)
            except OSError:
                self._close_link(link, reset=False)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except BlockingIOError:
                return
            try:
                upstream = socket.create_connection(
                    self.target, CONNECT_TIMEOUT_SECONDS
                )
            except OSError:
                client.close()
                with self._changed:
                    self.refused += 1
                    self._changed.notify_all()
                continue
            self._add_link(client, upstream)

    def _add_link(self, client: socket.socket, upstream: socket.socket) -> None:
        for sock in (client, upstream):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._changed:
            self.accepted += 1
            link = Link(self.accepted, client, upstream)
            link.frozen = self._freeze_new
            self.links.append(link)
            self._changed.notify_all()

    def _read(self, link: Link, side: int) -> None:
        try:
            data = link.socks[side].recv(CHUNK_BYTES)
        except BlockingIOError:
            return
        if not data:
            link.eof[side] = True
            return
        link.pending[side].extend(data)
        link.count(side, len(data))

    def _write(self, link: Link, side: int) -> None:
        waiting = link.pending[side]
        try:
            sent = link.socks[1 - side].send(waiting)
        except BlockingIOError:
            return
        del waiting[:sent]

    def _finish_half_closes(self, link: Link) -> None:
        # A FIN goes on once everything read before it has been written.
        for side in (CLIENT, UPSTREAM):
            if link.eof[side] and not link.pending[side] and not link.shut[side]:
                link.shut[side] = True
                link.socks[1 - side].shutdown(socket.SHUT_WR)
        if all(link.shut):
            self._close_link(link, reset=False)

    def _close_link(self, link: Link, reset: bool) -> None:
        for sock in link.socks:
            if reset:
                # Linger on with a zero timeout: close() sends an RST.
                linger = struct.pack("ii", 1, 0)
                try:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                except OSError:
                    pass
            sock.close()
        with self._changed:
            link.closed = True
            self._changed.notify_all()

    def _quiet_timeout(self) -> float | None:
        if self._quiet_freeze is None:
            return None
        quiet = self._quiet_freeze[0]
        return max(0.0, self._last_moved() + quiet - time.monotonic())

    def _check_quiet(self) -> None:
        if self._quiet_freeze is None:
            return
        quiet, new_connections, done, stamp = self._quiet_freeze
        if time.monotonic() - self._last_moved() < quiet:
            return
        self._quiet_freeze = None
        self._freeze_new = new_connections
        for link in self.links:
            link.frozen = link.frozen or not link.closed
        stamp.append(time.monotonic())
        done.set()

    def _disarm(self) -> None:
        self._quiet_freeze = None

    def _last_moved(self) -> float:
        live = [link.last_moved_at for link in self.links if not link.closed]
        return max(live, default=0.0)

    def _shut_down(self) -> None:
        for link in self.links:
            if not link.closed:
                self._close_link(link, reset=False)
        self._listener.close()
        self._run_calls()  # release any caller still waiting

    # Calls from the test thread into the loop.

    def _call(self, func: Callable[[], Any]) -> Any:
        done = threading.Event()
        result: list = []

        def call() -> None:
            try:
                result.append(func())
            finally:
                done.set()

        with self._changed:
            if self._thread is None or self._stopping:
                raise RuntimeError("relay is not running")
            self._calls.append(call)
        self._wake()
        if not done.wait(CALL_TIMEOUT_SECONDS):
            raise AssertionError(
                f"relay loop did not answer in {CALL_TIMEOUT_SECONDS}s"
            )
        if not result:
            raise AssertionError("relay call failed or the loop stopped first")
        return result[0]

    def _run_calls(self) -> None:
        while True:
            with self._changed:
                if not self._calls:
                    return
                call = self._calls.popleft()
            call()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"w")
        except BlockingIOError:
            pass  # the pipe is full, so the loop is woken already

    def _drain_wakeups(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
