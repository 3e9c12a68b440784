"""HTTPS proxy selection from the environment, and HTTP CONNECT tunnels.

One set of rules for the REST checks and the WebSocket alike, whatever
websocket-client version is installed: the agent opens the tunnel itself.
Called from the main thread only.
"""

import base64
import ipaddress
import socket
import typing
import urllib.parse

from . import logs
from .errors import ConfigError, ConnectionLost

PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
NO_PROXY_VARIABLES = ("no_proxy", "NO_PROXY")
CONNECT_TIMEOUT_SECONDS = 30.0
MAX_REPLY_BYTES = 16384


class ProxyError(ConnectionLost):
    """The proxy could not be reached or would not open the tunnel.

    `status` is the proxy's HTTP status when it answered (407: it wants
    credentials), else None.
    """

    def __init__(self, reason, status=None):
        super().__init__(reason)
        self.status = status


class ProxyRoute(typing.NamedTuple):
    host: str
    port: int
    authorization: typing.Optional[str]
    variable: str

    @property
    def display(self):
        """The proxy as it may be logged: never with its credentials."""
        return f"{self.host}:{self.port} (from {self.variable})"


def route_for(host, port, environ):
    """The proxy to reach host:port through, or None to go direct."""
    for name in PROXY_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            break
    else:
        return None
    if bypassed(host, port, no_proxy_entries(environ)):
        return None
    return parse_proxy(value, name)


def no_proxy_entries(environ):
    for name in NO_PROXY_VARIABLES:
        value = environ.get(name)
        if value is not None:
            return [e.strip().lower() for e in value.split(",") if e.strip()]
    return []


def bypassed(host, port, entries):
    """True when a NO_PROXY entry matches: `*`, host, `.suffix`, host:port."""
    host = host.lower().strip("[]")
    for entry in entries:
        if entry == "*":
            return True
        name, entry_port = _split_entry(entry)
        if entry_port is not None and entry_port != port:
            continue
        if _host_matches(host, name):
            return True
    return False


def _split_entry(entry):
    if entry.startswith("["):
        name, _, rest = entry[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif entry.count(":") == 1:
        name, _, port = entry.partition(":")
    else:
        name, port = entry, ""
    return name, int(port) if port.isdigit() else None


def _host_matches(host, name):
    if "/" in name:
        try:
            return ipaddress.ip_address(host) in ipaddress.ip_network(name, False)
        except ValueError:
            return False
    if name.startswith("."):
        return host.endswith(name) or host == name[1:]
    return host == name or host.endswith("." + name)


def parse_proxy(value, variable):
    if "://" not in value:
        value = "http://" + value
    parts = urllib.parse.urlsplit(value)
    scheme = parts.scheme.lower()
    if scheme.startswith("socks"):
        raise ConfigError(
            f"{variable} names a {scheme} proxy; only http:// proxies (HTTP CONNECT) are "
            "supported, SOCKS would need another dependency"
        )
    if scheme != "http" or not parts.hostname:
        raise ConfigError(
            f"{variable} is not an http:// proxy URL; use http://host:port"
        )
    authorization = None
    if parts.username is not None:
        user = urllib.parse.unquote(parts.username)
        password = urllib.parse.unquote(parts.password or "")
        logs.add_secret(password)
        pair = (f"{user}:{password}").encode()
        authorization = "Basic " + base64.b64encode(pair).decode("ascii")
    try:
        port = parts.port or 80
    except ValueError as exc:
        raise ConfigError(f"{variable} has a bad port") from exc
    return ProxyRoute(parts.hostname, port, authorization, variable)


def tunnel(route, host, port):
    """A TCP socket through the proxy to host:port (CONNECT answered 2xx)."""
    try:
        sock = socket.create_connection(
            (route.host, route.port), CONNECT_TIMEOUT_SECONDS
        )
    except OSError as exc:
        raise ProxyError(
            f"cannot reach proxy {route.display}: {exc.strerror or exc}"
        ) from exc
    try:
        sock.sendall(_connect_request(route, host, port))
        status, reason = _read_reply(sock)
    except OSError as exc:
        sock.close()
        raise ProxyError(f"proxy {route.display} failed: {exc}") from exc
    if not 200 <= status < 300:
        sock.close()
        hint = ""
        if status == 407:
            hint = "; give the credentials in the proxy URL: http://user:password@host:port"
        raise ProxyError(
            f"proxy {route.display} refused CONNECT to {host}:{port}: {status} "
            f"{reason}{hint}",
            status,
        )
    return sock


def _connect_request(route, host, port):
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if route.authorization:
        lines.append("Proxy-Authorization: " + route.authorization)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")


def _read_reply(sock):
    """Read the proxy's reply head byte-exactly, leaving the tunnel unread."""
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise OSError("proxy closed the connection during CONNECT")
        head += chunk
        if len(head) > MAX_REPLY_BYTES:
            raise OSError("proxy reply head is too long")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    fields = status_line.split(" ", 2)
    if len(fields) < 2 or not fields[1].isdigit():
        raise OSError(f"proxy sent a bad status line {status_line[:80]!r}")
    return int(fields[1]), fields[2] if len(fields) > 2 else ""
