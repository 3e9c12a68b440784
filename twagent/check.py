"""`tw-agent --check`: each step a real start needs, one line per step.

Runs on the main thread, with no other thread; it takes no lease and
leaves no session behind (the WebSocket is closed with 1000 at once).
"""

import email.utils
import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import typing

from . import api, logs, proxy
from . import config as cfg
from .connection import (
    Connection,
    HandshakeRefused,
    close_code,
    http_get,
    open_tls,
    parse_endpoint,
    tls_context,
    translate,
    wait_readable,
)
from .errors import ConfigError, TwAgentError
from .policy import CLOSE_DUPLICATE
from .status import read_record, staleness, status_path
from .version import VERSION

log = logging.getLogger(__name__)

SCHEDULER_COMMANDS = (
    "sbatch",
    "squeue",
    "scancel",
    "bsub",
    "bjobs",
    "bkill",
    "qsub",
    "qstat",
    "qdel",
)
TCP_TIMEOUT_SECONDS = 10.0
CLOSE_WAIT_SECONDS = 1.0
SKEW_WARN_SECONDS = 60.0
LOW_SPACE_BYTES = 1 << 30
LOGIN_SHELL_SECONDS = 30.0
OPCODE_CLOSE = 8


class Step(typing.NamedTuple):
    name: str
    outcome: str  # "ok", "FAIL", "warn" or "info"
    detail: str
    hint: str = ""
    required: bool = True

    @property
    def failed(self):
        return self.outcome == "FAIL" and self.required


def ok(name, detail):
    return Step(name, "ok", detail)


def fail(name, detail, hint=""):
    return Step(name, "FAIL", detail, hint)


def run(args, environ, out=None):
    """Run every step and print it; 0 when all required steps pass."""
    out = out or sys.stdout
    checker = Checker(args, environ, out)
    return checker.run()


class Checker:
    def __init__(self, args, environ, out):
        self.args = args
        self.environ = environ
        self.out = out
        self.steps = []
        self.endpoint = None
        self.url = None
        self.token = None
        self.context = None
        self.route = None

    def run(self):
        self._print_head()
        if self.configuration() and self.network():
            self.platform()
        self.local()
        failed = [s.name for s in self.steps if s.failed]
        if failed:
            self._say(f"result: FAILED ({', '.join(failed)})")
            return 1
        self._say("result: every required step passed")
        return 0

    def _print_head(self):
        who = self.args.connection_id or "(no connection ID)"
        self._say(f"tw-agent {VERSION} check of connection ID {who}")

    def _say(self, text):
        print(logs.redact(text), file=self.out)
        self.out.flush()

    def add(self, step):
        self.steps.append(step)
        self._say(f"{step.outcome:<5} {step.name:<16} {step.detail}")
        if step.hint and step.outcome != "ok":
            self._say(" " * 23 + f"hint: {step.hint}")
        return not step.failed

    def attempt(self, name, func, hint=""):
        """Add func()'s step; a raised error becomes a FAIL line."""
        try:
            return self.add(func())
        except TwAgentError as exc:
            return self.add(fail(name, str(exc), hint))
        except Exception as exc:  # noqa: BLE001 - report, never crash
            error = translate(exc, self.endpoint)
            return self.add(fail(name, str(error), hint))

    # The groups of steps; each returns False when later ones cannot run.

    def configuration(self):
        done = self.attempt("configuration", self._configuration)
        return self.attempt("CA bundle", self._ca_bundle) and done

    def network(self):
        if not self.attempt("proxy", self._proxy):
            return False
        if not self.attempt("name resolution", self._resolve):
            return False
        hint = "check the URL's host and port, HTTPS_PROXY/NO_PROXY, firewalls"
        if not self.attempt("TCP reach", self._reach, hint):
            return False
        return self.attempt("TLS chain", self._tls)

    def platform(self):
        self.attempt("clock skew", self._clock)
        if not self.attempt("service-info", self._service_info):
            return False
        token_hint = (
            f"check the token ({cfg.TOKEN_VARIABLE}, -t or --token-file) and the URL"
        )
        if not self.attempt("token", self._user, token_hint):
            return False
        self.attempt("WebSocket", self._websocket)
        return True

    def local(self):
        self.attempt("work dir", self._work_dir)
        self.attempt("shell", self._shell)
        self.add(self._schedulers())
        self.add(self._local_agent())
        return True

    # The steps: each returns its Step or raises.

    def _configuration(self):
        from .cli import _token

        if not self.args.connection_id:
            raise ConfigError("missing AGENT_CONNECTION_ID (see tw-agent --help)")
        raw = self.args.url or self.environ.get(cfg.URL_VARIABLE) or cfg.DEFAULT_URL
        self.url = cfg.check_url(raw)
        self.endpoint = parse_endpoint(self.url)
        self.token = _token(self.args, self.environ)
        source = (
            "--token-file"
            if self.args.token_file
            else ("-t" if self.args.access_token else cfg.TOKEN_VARIABLE)
        )
        return ok("configuration", f"platform {self.url}, token from {source}")

    def _ca_bundle(self):
        self.context = tls_context(self.args.ca_file, self.environ)
        if self.args.ca_file:
            return ok("CA bundle", f"{self.args.ca_file} loaded, besides the system's")
        chosen = self.environ.get("SSL_CERT_FILE") or self.environ.get("SSL_CERT_DIR")
        paths = ssl_paths()
        if chosen:
            return ok("CA bundle", f"SSL_CERT_FILE/SSL_CERT_DIR: {chosen}")
        return ok("CA bundle", paths)

    def _proxy(self):
        self.route = proxy.route_for(
            self.endpoint.host, self.endpoint.port, self.environ
        )
        if self.route is None:
            return ok("proxy", "none: direct connection")
        return ok("proxy", f"HTTP CONNECT through {self.route.display}")

    def _resolve(self):
        host = self.route.host if self.route else self.endpoint.host
        try:
            infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            return fail(
                "name resolution",
                f"cannot resolve {host}: {exc.strerror}",
                "check the host name in the URL (or the proxy) and /etc/resolv.conf",
            )
        addresses = sorted({info[4][0] for info in infos})
        what = f"{host} -> {', '.join(addresses[:4])}"
        if self.route:
            what += f" (the proxy resolves {self.endpoint.host})"
        return ok("name resolution", what)

    def _reach(self):
        started = time.monotonic()
        if self.route is None:
            address = (self.endpoint.host, self.endpoint.port)
            sock = socket.create_connection(address, TCP_TIMEOUT_SECONDS)
            what = f"{self.endpoint.host}:{self.endpoint.port}"
        else:
            sock = proxy.tunnel(self.route, self.endpoint.host, self.endpoint.port)
            what = f"{self.endpoint.netloc} through the proxy (CONNECT answered 2xx)"
        sock.close()
        millis = (time.monotonic() - started) * 1000
        return ok("TCP reach", f"{what} in {millis:.0f} ms")

    def _tls(self):
        sock = open_tls(self.endpoint, self.context, 60, self.environ)
        try:
            cert = sock.getpeercert() or {}
            version = sock.version()
        finally:
            sock.close()
        issuer = _name(cert.get("issuer"))
        return ok("TLS chain", f"{version}, verified; issued by {issuer}")

    def _clock(self):
        reply = http_get(
            self.endpoint, "/service-info", self.token, self.context, self.environ
        )
        date = {k.lower(): v for k, v in reply.headers.items()}.get("date")
        if not date:
            return Step(
                "clock skew", "warn", "the server sent no Date header", required=False
            )
        server = email.utils.parsedate_to_datetime(date).timestamp()
        skew = time.time() - server
        detail = f"{skew:+.1f}s against the server's Date header"
        if abs(skew) > SKEW_WARN_SECONDS:
            return Step("clock skew", "warn", detail, "is NTP running here?", False)
        return ok("clock skew", detail)

    def _service_info(self):
        args = (self.endpoint, self.url, self.token, self.context, self.environ)
        info = api.check_service_info(*args)
        return ok(
            "service-info",
            "platform {}, API {} (this agent needs {})".format(
                info.get("version", "?"),
                info.get("apiVersion", "?"),
                api.REQUIRED_API_VERSION,
            ),
        )

    def _user(self):
        api.check_user(self.endpoint, self.url, self.token, self.context, self.environ)
        return ok("token", f"accepted by {self.url}/user")

    def _websocket(self):
        connection_id = self.args.connection_id
        try:
            connection = Connection.open(
                self.endpoint, connection_id, self.token, self.context, self.environ, 60
            )
        except HandshakeRefused as exc:
            if exc.status == 404:
                return fail(
                    "WebSocket",
                    f"the platform does not know connection ID {connection_id} (HTTP 404)",
                    "copy the connection ID from the platform's agent credentials",
                )
            raise
        code = _early_close(connection)
        if code == CLOSE_DUPLICATE:
            return Step(
                "WebSocket",
                "info",
                "upgrade accepted, then closed with 4000: an agent is already "
                "connected for this connection ID",
                required=False,
            )
        if code is not None:
            return fail("WebSocket", f"upgrade accepted, then closed with {code}")
        return ok("WebSocket", "upgrade accepted; closed at once with 1000")

    def _work_dir(self):
        home = os.path.expanduser("~")
        path = os.path.abspath(
            os.path.expanduser(self.args.work_dir or os.path.join(home, "work"))
        )
        hint = "create it or pass -w/--work-dir"
        if not os.path.isdir(path):
            return fail("work dir", f"{path} does not exist", hint)
        try:
            fd, probe = tempfile.mkstemp(prefix=".tw-agent-check-", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            return fail("work dir", f"{path} is not writable: {exc.strerror}", hint)
        free = shutil.disk_usage(path).free
        detail = f"{path} exists, writable, {free / (1 << 30):.1f} GiB free"
        if free < LOW_SPACE_BYTES:
            return Step("work dir", "warn", detail, "less than 1 GiB free", False)
        return ok("work dir", detail)

    def _shell(self):
        from .agent import shell_argv

        argv = shell_argv(self.args.login_shell, self.environ)
        found = shutil.which(argv[0], path=self.environ.get("PATH"))
        if not found:
            return fail(
                "shell", f"{argv[0]} is not on PATH", "set PATH to include /bin"
            )
        return ok("shell", "commands run as: {} <command>".format(" ".join(argv)))

    def _schedulers(self):
        if self.args.login_shell:
            found = self._found_by_login_shell()
        else:
            path = self.environ.get("PATH")
            found = [c for c in SCHEDULER_COMMANDS if shutil.which(c, path=path)]
        missing = [c for c in SCHEDULER_COMMANDS if c not in found]
        detail = "found: {}; not found: {}".format(
            ", ".join(found) or "none",
            ", ".join(missing) or "none",
        )
        hint = "" if found else "under cron or systemd, try --login-shell"
        return Step("schedulers", "info", detail, hint, required=False)

    def _found_by_login_shell(self):
        """The scheduler commands on the PATH a login shell sets up."""
        from .agent import shell_argv
        from .executor import child_environment

        names = " ".join(SCHEDULER_COMMANDS)
        probe = f"for c in {names}; do command -v $c >/dev/null && echo $c; done"
        argv = shell_argv(True, self.environ) + [probe]
        try:
            result = subprocess.run(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env=child_environment(self.environ, [self.token]),
                timeout=LOGIN_SHELL_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("the login shell did not answer: %s", exc)
            return []
        lines = result.stdout.decode("utf-8", "replace").split()
        return [c for c in SCHEDULER_COMMANDS if c in lines]

    def _local_agent(self):
        directory = cfg.state_dir(self.environ)
        connection_id = self.args.connection_id or ""
        record = (
            read_record(status_path(directory, connection_id))
            if connection_id
            else None
        )
        if record is None or staleness(record) is not None:
            return Step(
                "local agent",
                "info",
                "none running for this connection ID",
                required=False,
            )
        detail = "pid {} on host {} is {}".format(
            record.get("pid"),
            record.get("host"),
            record.get("state"),
        )
        return Step("local agent", "info", detail, required=False)


def _early_close(connection):
    """The close code the platform sent right after the upgrade, or None;
    the connection is closed with 1000 in every case."""
    deadline = time.monotonic() + CLOSE_WAIT_SECONDS
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if not connection.has_buffered() and not wait_readable([connection], left):
                return None
            frame = connection.recv_frame()
            if frame is not None and frame.opcode == OPCODE_CLOSE:
                return close_code(frame)
    finally:
        connection.close(1000, b"tw-agent --check")


def _name(parts):
    """`CN=...` of a certificate's issuer tuple."""
    for rdn in parts or ():
        for key, value in rdn:
            if key in ("commonName", "organizationName"):
                return value
    return "?"


def ssl_paths():
    import ssl

    paths = ssl.get_default_verify_paths()
    return f"system store ({paths.cafile or paths.capath or 'OpenSSL default'})"
