"""Sockets to the platform: TLS, the REST checks and the WebSocket.

Every library exception is translated here, in `translate()`, which is the
one place that decides whether a failure is worth a retry. A `Connection`
is owned by the main thread: no other thread reads or writes its socket.
"""

import http.client
import json
import logging
import os
import select
import socket
import ssl
import struct
import time
import typing
import urllib.parse

import websocket

from . import proxy, wire
from .errors import AgentBug, ConfigError, ConnectionLost, TwAgentError

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_SECONDS = 30.0
READ_TIMEOUT_SECONDS = 30.0
SEND_TIMEOUT_SECONDS = 60.0
# While a frame is half read the main thread waits this long for the rest
# before it goes back to its other work; the partial frame is kept.
FRAME_WAIT_SECONDS = 0.2
MAX_BODY_BYTES = 1 << 20
KEEPIDLE_SECONDS = 30
KEEPINTVL_SECONDS = 10
KEEPCNT = 3
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)
CLOSE_NO_STATUS = 1005


class Endpoint(typing.NamedTuple):
    host: str
    port: int
    base_path: str

    @property
    def netloc(self):
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == 443 else f"{host}:{self.port}"


class HttpReply(typing.NamedTuple):
    status: int
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))


class TlsError(ConnectionLost):
    """The server's certificate could not be verified."""


class HandshakeRefused(ConnectionLost):
    """The WebSocket upgrade was answered with an HTTP error status."""

    def __init__(self, reason, status):
        super().__init__(reason)
        self.status = status


def parse_endpoint(url):
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise ConfigError(f"not an https URL: {url!r}")
    try:
        port = parts.port or 443
    except ValueError as exc:
        raise ConfigError(f"bad port in URL {url!r}") from exc
    return Endpoint(parts.hostname, port, parts.path.rstrip("/"))


# Where Linux distributions keep their CA bundle: Debian/Ubuntu, RHEL and
# its rebuilds, older RHEL, SUSE, others. A binary built on one
# distribution only knows its own path, so the agent looks for itself.
CA_BUNDLE_PATHS = (
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/ssl/ca-bundle.pem",
    "/var/lib/ca-certificates/ca-bundle.pem",
    "/etc/ssl/cert.pem",
)


def system_ca_bundle(environ, paths=CA_BUNDLE_PATHS):
    """A CA bundle to load when OpenSSL's own default finds none, or None.

    SSL_CERT_FILE and SSL_CERT_DIR, when set, are OpenSSL's to honour.
    """
    if environ.get("SSL_CERT_FILE") or environ.get("SSL_CERT_DIR"):
        return None
    defaults = ssl.get_default_verify_paths()
    if defaults.cafile and os.path.isfile(defaults.cafile):
        return None
    if (
        defaults.capath
        and os.path.isdir(defaults.capath)
        and os.listdir(defaults.capath)
    ):
        return None
    return next((p for p in paths if os.path.isfile(p)), None)


def tls_context(ca_file=None, environ=None):
    """A verifying client context: SSL_CERT_*, the system store, --ca-file."""
    context = ssl.create_default_context()
    bundle = system_ca_bundle(os.environ if environ is None else environ)
    if bundle:
        log.debug("loading the system CA bundle %s", bundle)
        context.load_verify_locations(cafile=bundle)
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(f"cannot load CA file {ca_file}: {exc}") from exc
    return context


def set_keepalive(sock, user_timeout_seconds):
    """Make a dead peer fail reads and writes instead of hanging them.

    Also TCP_NODELAY: a response and the ping after it are small writes,
    and Nagle would hold the next response until the ping is acknowledged.
    """
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (
        ("TCP_KEEPIDLE", KEEPIDLE_SECONDS),
        ("TCP_KEEPINTVL", KEEPINTVL_SECONDS),
        ("TCP_KEEPCNT", KEEPCNT),
    ):
        if hasattr(socket, name):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)
    if hasattr(socket, "TCP_KEEPIDLE"):
        millis = int(user_timeout_seconds * 1000)
        sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, millis)


def open_tls(endpoint, context, user_timeout_seconds, environ):
    """A verified TLS socket to the endpoint, through a proxy if one applies."""
    route = proxy.route_for(endpoint.host, endpoint.port, environ)
    try:
        if route is None:
            address = (endpoint.host, endpoint.port)
            raw = socket.create_connection(address, CONNECT_TIMEOUT_SECONDS)
        else:
            log.debug("connecting through proxy %s", route.display)
            raw = proxy.tunnel(route, endpoint.host, endpoint.port)
    except (OSError, proxy.ProxyError) as exc:
        raise translate(exc, endpoint) from exc
    try:
        set_keepalive(raw, user_timeout_seconds)
        return context.wrap_socket(raw, server_hostname=endpoint.host)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise translate(exc, endpoint) from exc


def http_get(endpoint, path, token, context, environ, user_timeout_seconds=60):
    """GET base_path + path with the bearer token; any status is returned."""
    sock = open_tls(endpoint, context, user_timeout_seconds, environ)
    conn = http.client.HTTPSConnection(
        endpoint.host, endpoint.port, timeout=READ_TIMEOUT_SECONDS, context=context
    )
    conn.sock = sock
    try:
        sock.settimeout(READ_TIMEOUT_SECONDS)
        headers = {
            "Authorization": "Bearer " + token,
            "Accept": "application/json",
            "User-Agent": "tw-agent (twagent)",
        }
        conn.request("GET", endpoint.base_path + path, headers=headers)
        reply = conn.getresponse()
        body = reply.read(MAX_BODY_BYTES)
        return HttpReply(reply.status, dict(reply.getheaders()), body)
    except (OSError, http.client.HTTPException) as exc:
        raise translate(exc, endpoint) from exc
    finally:
        conn.close()


def translate(exc, endpoint=None):
    """The agent's error for a library or OS exception.

    This is the one place that decides what is recoverable: a ConnectionLost
    (or subclass) means back off and try again; anything else ends the agent.
    """
    where = endpoint.netloc if endpoint else "the platform"
    if isinstance(exc, TwAgentError):
        return exc
    if _is_verify_failure(exc):
        detail = getattr(exc, "verify_message", None) or getattr(exc, "reason", exc)
        return TlsError(
            f"TLS certificate of {where} could not be verified ({detail}); if "
            "the platform uses a private CA, pass its bundle with --ca-file"
        )
    if isinstance(exc, websocket.WebSocketBadStatusException):
        status = getattr(exc, "status_code", 0)
        return HandshakeRefused(
            f"WebSocket upgrade refused by {where} with HTTP {status}", status
        )
    if isinstance(exc, socket.gaierror):
        return ConnectionLost(f"cannot resolve {where}: {exc.strerror}")
    if isinstance(exc, (socket.timeout, websocket.WebSocketTimeoutException)):
        return ConnectionLost(f"timed out talking to {where}")
    if isinstance(exc, (OSError, websocket.WebSocketException)):
        return ConnectionLost(f"connection to {where} failed: {exc or type(exc)}")
    if isinstance(exc, http.client.HTTPException):
        return ConnectionLost(f"bad HTTP reply from {where}: {exc!r}")
    if isinstance(exc, ValueError) and "closed" in str(exc):
        return ConnectionLost(f"connection to {where} is closed")
    # Anything else is a bug in the agent, not a network failure: it must
    # not turn into a quiet reconnect loop.
    return AgentBug(f"unexpected {type(exc).__name__} talking to {where}: {exc}")


def _is_verify_failure(exc):
    # Python 3.6 has no SSLCertVerificationError: it raises a plain SSLError
    # (or CertificateError for a name mismatch).
    if isinstance(exc, ssl.CertificateError):
        return True
    return isinstance(exc, ssl.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


class Frame(typing.NamedTuple):
    opcode: int
    data: bytes


class Connection:
    """One WebSocket session; main thread only.

    `fileno()` is for select(); `has_buffered()` says TLS already holds
    decrypted bytes that select() cannot see.
    """

    def __init__(self, ws, endpoint):
        self._ws = ws
        self.endpoint = endpoint
        self.send_timeout = SEND_TIMEOUT_SECONDS
        # Wall-clock time of the last whole frame, for the status file
        # (read by the status thread; one float store is atomic).
        self.last_frame_at = None
        # The socket's timeout as last set: each settimeout() is a system
        # call, and reads and writes would otherwise set it every time.
        self._timeout = None

    @classmethod
    def open(cls, endpoint, connection_id, token, context, environ, user_timeout):
        path = f"{endpoint.base_path}/agent/{connection_id}/connect"
        url = f"wss://{endpoint.netloc}{path}"
        sock = open_tls(endpoint, context, user_timeout, environ)
        try:
            sock.settimeout(READ_TIMEOUT_SECONDS)
            ws = websocket.create_connection(
                url,
                socket=sock,
                header=["Authorization: Bearer " + token],
                timeout=READ_TIMEOUT_SECONDS,
                skip_utf8_validation=True,
                suppress_origin=True,
            )
        except Exception as exc:
            sock.close()
            raise translate(exc, endpoint) from exc
        return cls(ws, endpoint)

    def _sock(self, timeout=None):
        """The socket, with `timeout` set when given; ConnectionLost once
        the library has dropped it."""
        sock = self._ws.sock
        if sock is None:
            raise ConnectionLost(f"connection to {self.endpoint.netloc} is closed")
        if timeout is not None and timeout != self._timeout:
            sock.settimeout(timeout)
            self._timeout = timeout
        return sock

    def fileno(self):
        return self._sock().fileno()

    def has_buffered(self):
        sock = self._ws.sock
        return bool(sock is not None and sock.pending())

    def send_text(self, text):
        self.send_frames([text_frame(text)])

    def send_frames(self, frames):
        """Write (opcode, payload) frames in order, small ones together; a
        failure part-way leaves the link dead."""
        try:
            wire.write_frames(self._sock(self.send_timeout), frames)
        except Exception as exc:
            raise translate(exc, self.endpoint) from exc

    def send_ping(self, payload):
        self.send_frames([ping_frame(payload)])

    def recv_frame(self):
        """One frame, or None when only part of it has arrived so far."""
        try:
            self._sock(FRAME_WAIT_SECONDS)
            opcode, frame = self._ws.recv_data_frame(True)
        except websocket.WebSocketTimeoutException:
            return None
        except Exception as exc:
            raise translate(exc, self.endpoint) from exc
        data = frame.data
        if isinstance(data, str):
            data = data.encode("utf-8")
        self.last_frame_at = time.time()
        return Frame(opcode, data)

    def close(self, code=1000, reason=b"agent stopping"):
        """Send a close frame and wait briefly for the reply."""
        try:
            self._sock(2.0)
            self._ws.close(status=code, reason=reason, timeout=2.0)
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("close was not clean: %s", exc)
        finally:
            self.abort()

    def abort(self):
        try:
            self._ws.shutdown()
        except Exception as exc:  # noqa: BLE001 - best effort on the way out
            log.debug("shutdown failed: %s", exc)


def text_frame(text):
    """A text frame for send_frames()."""
    return wire.OPCODE_TEXT, wire.Payload.of(text.encode("utf-8"))


def ping_frame(text):
    """A ping frame for send_frames(); its pong echoes `text`."""
    return wire.OPCODE_PING, wire.Payload.of(text.encode("ascii"))


def close_code(frame):
    """The status code of a close frame, 1005 when it carried none."""
    if len(frame.data) >= 2:
        return struct.unpack("!H", frame.data[:2])[0]
    return CLOSE_NO_STATUS


def wait_readable(fds, timeout):
    """select() for reading; the fds that are ready."""
    readable, _, _ = select.select(fds, [], [], max(0.0, timeout))
    return readable
