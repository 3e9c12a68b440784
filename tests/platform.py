"""A fake Seqera Platform for tests: HTTPS REST endpoints and the agent
WebSocket on loopback, with a throwaway CA. The server's own threads run the
request handling and each Session.run(); tests call the rest from theirs.

One Condition, FakePlatform._changed, guards every piece of recorded state
(requests, sessions, messages, responses). Server threads take it to record
and then notify_all(); the test thread waits on it in the wait_* methods, so
a wait never misses a change made between its check and its sleep. The
recorded lists only grow, so reading them without the lock is fine in a test.
"""

from __future__ import annotations

import base64
import collections
import dataclasses
import json
import logging
import socket
import ssl
import struct
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Self

import pytest
import trustme
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request
from websockets.http11 import Response as HttpResponse
from websockets.sync.server import Server, ServerConnection, serve

log = logging.getLogger(__name__)

# The agent may send frames of up to 10 MiB plus JSON overhead and base64
# growth; 16 MiB leaves room for tests that go past the reference limit.
MAX_FRAME_BYTES = 16 * 1024 * 1024
HEARTBEAT_INTERVAL_SECONDS = 45
SERVICE_VERSION = "24.1.0-fake"
COMMIT_ID = "fakeplatform"
JOIN_SECONDS = 10


@dataclasses.dataclass(frozen=True)
class Response:
    """One decoded command-response message."""

    id: str
    exit_status: int
    output: bytes
    raw: dict

    @classmethod
    def from_message(cls, message: dict) -> Response:
        """Decode a command-response; TypeError or ValueError when a field
        is wrong."""
        command_id = message.get("id")
        exit_status = message.get("exitStatus")
        result = message.get("result")
        if not isinstance(command_id, str):
            raise TypeError(f"command-response id is not a string: {command_id!r}")
        # bool is an int subclass, but true is no exit status.
        if not isinstance(exit_status, int) or isinstance(exit_status, bool):
            raise TypeError(f"exitStatus is not an integer: {exit_status!r}")
        if not isinstance(result, str):
            raise TypeError(f"result is not a base64 string: {result!r}")
        output = base64.b64decode(result, validate=True)
        return cls(command_id, exit_status, output, message)


class Session:
    """One agent WebSocket connection, as the platform sees it.

    run() is the receive loop; it runs on the server's handler thread for
    this connection. The send, close and wait methods are for the test
    thread. close() runs the closing handshake on a helper thread that
    stop() joins, so a test can close and then answer as the client.
    `closed` is set by run() once the connection is down, with close_code
    already recorded; tests wait on it.
    """

    def __init__(
        self,
        platform: FakePlatform,
        connection: ServerConnection,
        number: int,
        reject: tuple[int, str] | None,
    ) -> None:
        self.number = number
        self.headers = _header_dict(connection.request.headers)
        self.info: dict | None = None
        self.messages: list[dict] = []
        self.raw_frames: list[str | bytes] = []
        self.heartbeats = 0
        self.answer_heartbeats = platform.answer_heartbeats
        self.responses: dict[str, list[Response]] = {}
        self.protocol_errors: list[str] = []
        self.closed = threading.Event()
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._platform = platform
        self._changed = platform._changed
        self._connection = connection
        self._reject = reject
        self._closers: list[threading.Thread] = []

    def __repr__(self) -> str:
        return f"<Session {self.number} messages={len(self.messages)}>"

    # The receive loop (server handler thread).

    def run(self) -> None:
        """Record and answer frames until the connection ends."""
        try:
            while True:
                try:
                    frame = self._connection.recv()
                except ConnectionClosed:
                    break
                self._receive(frame)
        finally:
            # close() returns once TCP is down or close_timeout has passed,
            # so close_code below is final when `closed` is set.
            self._connection.close()
            self._record_close()

    def _receive(self, frame: str | bytes) -> None:
        message = self._decode(frame)
        if message is None:
            return

        with self._changed:
            self.messages.append(message)
            first = self.info is None
            if first:
                self.info = message
            self._changed.notify_all()

        if first:
            self._platform._session_ready(self)
            if self._reject is not None:
                self.close(*self._reject)
        kind = message.get("@type")
        if kind == "heartbeat":
            self._receive_heartbeat()
        elif kind == "command-response":
            self._receive_response(message)

    def _decode(self, frame: str | bytes) -> dict | None:
        with self._changed:
            self.raw_frames.append(frame)
            self._changed.notify_all()
        if isinstance(frame, bytes):
            return self._protocol_error(f"binary frame of {len(frame)} bytes")
        try:
            message = json.loads(frame)
        except ValueError as exc:
            return self._protocol_error(f"frame is not JSON: {exc}")
        if not isinstance(message, dict):
            return self._protocol_error(f"frame is not a JSON object: {frame[:80]}")
        return message

    def _protocol_error(self, text: str) -> None:
        log.warning("session %d: %s", self.number, text)
        with self._changed:
            self.protocol_errors.append(text)
            self._changed.notify_all()

    def _receive_heartbeat(self) -> None:
        with self._changed:
            self.heartbeats += 1
            answer = self.answer_heartbeats
            self._changed.notify_all()
        if answer:
            try:
                self.send_json({"@type": "heartbeat"})
            except ConnectionClosed:
                pass  # the agent went away between its beat and our answer

    def _receive_response(self, message: dict) -> None:
        try:
            response = Response.from_message(message)
        except (TypeError, ValueError) as exc:
            self._protocol_error(f"bad command-response: {exc}")
            return
        with self._changed:
            self.responses.setdefault(response.id, []).append(response)
            self._changed.notify_all()

    def _record_close(self) -> None:
        # close_rcvd is the Close frame the client sent; None after a drop.
        received = self._connection.protocol.close_rcvd
        with self._changed:
            if received is not None:
                self.close_code = received.code
                self.close_reason = received.reason
            self.closed.set()
            self._changed.notify_all()
        log.debug("session %d closed, client code %s", self.number, self.close_code)

    # Sending (any thread; websockets serialises frames itself). Each
    # raises websockets' ConnectionClosed once the connection is gone.

    def send_json(self, message: Any) -> None:
        """Send one JSON text frame."""
        self._connection.send(json.dumps(message))

    def send_raw(self, frame: str | bytes, text: bool | None = None) -> None:
        """Send `frame` as given: str as a text frame, bytes as binary.

        `text=True` sends bytes as a text frame without checking them, so a
        test can send invalid UTF-8 where text is due; `text=False` sends a
        str as a binary frame of its UTF-8.
        """
        self._connection.send(frame, text=text)

    def send_command(self, command: str, id: str | None = None) -> str:
        """Send a command-request and return its id (made up when None)."""
        command_id = id if id is not None else uuid.uuid4().hex
        self.send_json(
            {"@type": "command-request", "id": command_id, "command": command}
        )
        return command_id

    # Ending the connection (test thread).

    def close(self, code: int, reason: str = "") -> None:
        """Start a close handshake with `code`; return at once.

        Wait on `closed` (or wait_closed()) for the end. The handshake runs
        on a helper thread, because a client in the same test thread can
        only answer after this returns.
        """
        closer = threading.Thread(
            target=self._connection.close,
            args=(code, reason),
            name=f"fakeplatform-close-{self.number}",
        )
        with self._changed:
            self._closers.append(closer)
        closer.start()

    def abort(self, reset: bool = False) -> None:
        """Drop the TCP connection without a Close frame (RST if `reset`)."""
        if reset:
            # Linger on with a zero timeout makes close() send an RST.
            linger = struct.pack("ii", 1, 0)
            self._connection.socket.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, linger
            )
        self._connection.close_socket()

    def join_helpers(self, timeout: float) -> list[threading.Thread]:
        """Join the close helper threads; return those still alive."""
        with self._changed:
            closers = list(self._closers)
        for closer in closers:
            closer.join(timeout)
        return [closer for closer in closers if closer.is_alive()]

    # Waiting (test thread).

    def wait_response(self, id: str, timeout: float = 30) -> Response:
        """Return the first response to command `id` on this session."""

        def found() -> Response | None:
            responses = self.responses.get(id)
            return responses[0] if responses else None

        return _wait_until(
            self._changed,
            found,
            timeout,
            lambda: (
                f"no command-response for {id!r} on session {self.number} "
                f"within {timeout}s; ids seen {sorted(self.responses)}, "
                f"protocol errors {self.protocol_errors}"
            ),
        )

    def wait_responses(
        self, id: str, count: int, timeout: float = 30
    ) -> list[Response]:
        """Wait until command `id` has `count` responses on this session or
        more; return them all."""

        def found() -> list[Response] | None:
            responses = self.responses.get(id, [])
            return list(responses) if len(responses) >= count else None

        return _wait_until(
            self._changed,
            found,
            timeout,
            lambda: (
                f"{len(self.responses.get(id, []))} command-responses for {id!r} "
                f"on session {self.number} within {timeout}s, expected {count}"
            ),
        )

    def wait_heartbeats(self, count: int, timeout: float = 10) -> int:
        """Wait until at least `count` heartbeats came; return the count."""
        _wait_until(
            self._changed,
            lambda: self.heartbeats >= count,
            timeout,
            lambda: (
                f"session {self.number} sent {self.heartbeats} heartbeats "
                f"in {timeout}s, expected {count}"
            ),
        )
        return self.heartbeats

    def wait_closed(self, timeout: float = 10) -> int | None:
        """Wait for the connection to end; return the client's close code."""
        if not self.closed.wait(timeout):
            raise AssertionError(f"session {self.number} still open after {timeout}s")
        return self.close_code


class FakePlatform:
    """The fake platform's server: TLS, REST endpoints, agent sessions.

    start() runs the websockets server loop on the thread
    "fakeplatform-serve"; each connection then gets a handler thread from
    the library. stop() ends all of them and fails loudly if one lingers.
    """

    def __init__(
        self,
        tmp_path: Path,
        token: str = "test-token",
        connection_id: str = "test-connection",
        host: str = "127.0.0.1",
        api_prefix: str = "",
        api_version: str | None = "1.8",
        *,
        user_name: str = "platform-user",
        ping_interval: float | None = None,
        open_timeout: float = 10,
        close_timeout: float = 5,
    ) -> None:
        self.token = token
        self.connection_id = connection_id
        self.host = host
        self.api_prefix = api_prefix.rstrip("/")
        self.api_version = api_version
        self.user_name = user_name
        self.answer_heartbeats = True
        self.port: int | None = None
        self.http_requests: list[tuple[str, str, dict[str, str]]] = []
        self.sessions: list[Session] = []
        self.ca = trustme.CA()
        self.ca_file = _write_ca(self.ca, Path(tmp_path))
        self._ping_interval = ping_interval
        self._open_timeout = open_timeout
        self._close_timeout = close_timeout
        self._changed = threading.Condition()
        self._scripted: dict[str, collections.deque[int]] = {}
        self._rejections: collections.deque[tuple[int, str, bool]] = collections.deque()
        self._ready: list[Session] = []
        self._taken = 0
        self._connections: list[ServerConnection] = []
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The API endpoint URL to give the agent."""
        return f"https://{self.host}:{self.port}{self.api_prefix}"

    @property
    def ws_url(self) -> str:
        """The agent's WebSocket URL for this platform's connection id."""
        base = self.url.replace("https://", "wss://", 1)
        return f"{base}/agent/{self.connection_id}/connect"

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # Starting and stopping (test thread).

    def start(self) -> Self:
        """Listen on `host` and serve in a thread.

        The first start takes an ephemeral port; a start after stop() listens
        on the same port again, so an agent sees a platform restart.
        """
        self._server = serve(
            self._run_session,
            self.host,
            self.port or 0,
            ssl=self._tls_context(),
            process_request=self._process_request,
            create_connection=self._create_connection,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            ping_interval=self._ping_interval,
            open_timeout=self._open_timeout,
            close_timeout=self._close_timeout,
        )
        self.port = self._server.socket.getsockname()[1]
        self._serve_thread = threading.Thread(
            target=self._server.serve_forever, name="fakeplatform-serve"
        )
        self._serve_thread.start()
        log.info("fake platform listening on %s", self.url)
        return self

    def stop(self) -> None:
        """Close every connection and join every thread started for them."""
        if self._server is None:
            return
        # shutdown() closes open sessions (1001) and joins handler threads.
        self._server.shutdown()
        self._serve_thread.join(JOIN_SECONDS)
        lingering = [self._serve_thread] if self._serve_thread.is_alive() else []

        for session in self.sessions:
            lingering += session.join_helpers(JOIN_SECONDS)
        with self._changed:
            connections = list(self._connections)
        for connection in connections:
            connection.recv_events_thread.join(JOIN_SECONDS)
            if connection.recv_events_thread.is_alive():
                lingering.append(connection.recv_events_thread)

        self._server = None
        if lingering:
            raise AssertionError(f"fake platform threads still alive: {lingering}")

    def restart(self) -> Self:
        """Stop, then listen again on the same port: a platform restart.

        Sessions, responses and requests recorded so far are kept.
        """
        self.stop()
        return self.start()

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert = self.ca.issue_cert("127.0.0.1", "127.0.0.2", "localhost")
        cert.configure_cert(context)
        return context

    def _create_connection(self, *args: Any, **kwargs: Any) -> ServerConnection:
        # Track every connection, REST ones too, so stop() can join the
        # receive thread the library starts for each.
        connection = ServerConnection(*args, **kwargs)
        connection.recv_events_thread.name = "fakeplatform-recv"
        with self._changed:
            self._connections.append(connection)
        return connection

    # Scripting (test thread).

    def script_status(self, path: str, statuses: Iterable[int]) -> None:
        """Answer the next requests to `path` (after the prefix, e.g.
        "/user") with these statuses, one each, then behave normally."""
        with self._changed:
            self._scripted.setdefault(path, collections.deque()).extend(statuses)

    def reject_next_with(
        self, code: int, count: int = 1, reason: str = "", on_connect: bool = False
    ) -> None:
        """Close the next `count` sessions with `code` right after info, or
        right after the upgrade with `on_connect` (a client that sends no
        info, like `tw-agent --check`, sees the close too)."""
        with self._changed:
            self._rejections.extend([(code, reason, on_connect)] * count)

    # Waiting (test thread).

    def wait_session(self, timeout: float = 10) -> Session:
        """Return the next session that sent its info, in arrival order.

        Each session is returned once; one that never sends info never is.
        """

        def next_ready() -> Session | None:
            return self._ready[self._taken] if len(self._ready) > self._taken else None

        session = _wait_until(
            self._changed,
            next_ready,
            timeout,
            lambda: (
                f"no new agent session sent info within {timeout}s "
                f"({len(self.sessions)} connected, {self._taken} already taken)"
            ),
        )
        with self._changed:
            self._taken += 1
        return session

    def wait_response(self, id: str, timeout: float = 30) -> Response:
        """Return the first response to command `id` on any session."""

        def found() -> Response | None:
            for session in self.sessions:
                if session.responses.get(id):
                    return session.responses[id][0]
            return None

        return _wait_until(
            self._changed,
            found,
            timeout,
            lambda: (
                f"no command-response for {id!r} on any of "
                f"{len(self.sessions)} sessions within {timeout}s"
            ),
        )

    # Server side (server threads).

    def _run_session(self, connection: ServerConnection) -> None:
        with self._changed:
            number = len(self.sessions) + 1
            reject = self._rejections.popleft() if self._rejections else None
            on_connect = bool(reject and reject[2])
            reject = reject[:2] if reject else None
            session = Session(self, connection, number, None if on_connect else reject)
            self.sessions.append(session)
            self._changed.notify_all()
        threading.current_thread().name = f"fakeplatform-session-{number}"
        log.debug("session %d connected", number)
        if on_connect:
            connection.close(*reject)
        session.run()

    def _session_ready(self, session: Session) -> None:
        with self._changed:
            self._ready.append(session)
            self._changed.notify_all()

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> HttpResponse | None:
        # Returning None lets the library finish the WebSocket upgrade (or
        # answer 426 to a plain GET on the connect path).
        path = request.path.split("?", 1)[0]
        with self._changed:
            self.http_requests.append(
                (request.method, request.path, _header_dict(request.headers))
            )
            self._changed.notify_all()

        if not path.startswith(self.api_prefix + "/"):
            return _json_response(connection, 404, {"message": "Not Found"})
        path = path[len(self.api_prefix) :]
        scripted = self._take_scripted(path)
        if scripted is not None:
            return _json_response(connection, scripted, {"message": "scripted"})
        if path.startswith("/agent/"):
            return self._check_upgrade(connection, request, path)
        if request.method != "GET":
            return _json_response(connection, 405, {"message": "Method Not Allowed"})
        if path == "/service-info":
            return _json_response(connection, 200, self._service_info())
        if path == "/user":
            return self._answer_user(connection, request)
        return _json_response(connection, 404, {"message": "Not Found"})

    def _take_scripted(self, path: str) -> int | None:
        with self._changed:
            statuses = self._scripted.get(path)
            return statuses.popleft() if statuses else None

    def _check_upgrade(
        self, connection: ServerConnection, request: Request, path: str
    ) -> HttpResponse | None:
        # The token is checked before the id, so a bad token never learns
        # whether a connection id exists.
        if not self._authorized(request):
            return _json_response(connection, 401, {"message": "Unauthorized"})
        if path != f"/agent/{self.connection_id}/connect":
            return _json_response(connection, 404, {"message": "Not Found"})
        return None

    def _answer_user(
        self, connection: ServerConnection, request: Request
    ) -> HttpResponse:
        if not self._authorized(request):
            return _json_response(connection, 401, {"message": "Unauthorized"})
        return _json_response(connection, 200, {"user": {"userName": self.user_name}})

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("Authorization") == f"Bearer {self.token}"

    def _service_info(self) -> dict:
        info: dict[str, Any] = {
            "version": SERVICE_VERSION,
            "commitId": COMMIT_ID,
            "heartbeatInterval": HEARTBEAT_INTERVAL_SECONDS,
        }
        if self.api_version is not None:
            info["apiVersion"] = self.api_version
        return {"serviceInfo": info}


def make_platform_fixture(name: str = "platform", **options: Any) -> Callable:
    """Build a pytest fixture `name` yielding a started FakePlatform.

    In conftest.py: `platform = make_platform_fixture()`; `options` go to
    FakePlatform.
    """

    def fixture(tmp_path: Path):
        with FakePlatform(tmp_path, **options) as platform:
            yield platform

    return pytest.fixture(fixture, name=name)


def _wait_until(
    changed: threading.Condition,
    predicate: Callable[[], Any],
    timeout: float,
    describe: Callable[[], str],
) -> Any:
    # wait_for re-checks the predicate under the lock after every notify.
    with changed:
        value = changed.wait_for(predicate, timeout)
        if not value:
            raise AssertionError(describe())
        return value


def _json_response(
    connection: ServerConnection, status: int, body: dict
) -> HttpResponse:
    # reject() already sets Date, Content-Length and Connection: close.
    response = connection.respond(status, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


def _header_dict(headers: Headers) -> dict[str, str]:
    # Lower-case names, as HTTP names are case-insensitive; repeats joined.
    result: dict[str, str] = {}
    for key, value in headers.raw_items():
        key = key.lower()
        result[key] = f"{result[key]}, {value}" if key in result else value
    return result


def _write_ca(ca: trustme.CA, directory: Path) -> str:
    # A unique name, so two platforms in one tmp_path keep their own CA.
    handle, path = tempfile.mkstemp(
        prefix="fake-platform-ca-", suffix=".pem", dir=directory
    )
    with open(handle, "wb") as stream:
        stream.write(ca.cert_pem.bytes())
    return path
