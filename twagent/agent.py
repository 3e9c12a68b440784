"""The agent: start-up checks, the reconnect loop, and command dispatch.

`Agent.run()` is the main thread's outer loop. It owns the executor (pool
workers), the heartbeat thread and the outbox they share. The signal
handler only notes the signal and wakes the main thread through the
outbox pipe: logging or raising inside a handler can hit the log stream in
the middle of a write. The loops call `checkpoint()` on every turn, which
acts on the signals: the first stops (warm), the second raises
ShutdownRequested (cold).
"""

import collections
import logging
import os
import select
import shutil
import signal
import time

from . import api, logs
from . import config as cfg
from .audit import AuditLog
from .connection import (
    Connection,
    HandshakeRefused,
    TlsError,
    parse_endpoint,
    tls_context,
)
from .errors import ConfigError, ConnectionLost, DuplicateAgentError, ShutdownRequested
from .executor import Executor, child_environment, clean_process_environment
from .heartbeat import Heartbeat
from .history import History
from .messages import CommandResponse, InfoMessage
from .outbox import Outbox
from .policy import CLOSE_DUPLICATE, DuplicateWatch, ReconnectPolicy
from .proxy import ProxyError
from .session import Session
from .status import StatusFile, StatusWriter
from .version import VERSION

log = logging.getLogger(__name__)

CANCEL_FLUSH_SECONDS = 2.0
CSH_SHELLS = ("csh", "tcsh")
# Noted like a signal by request_stop(); no signal has the number 0.
STOP_REQUEST = 0
NEVER = float("inf")


class Agent:
    def __init__(self, config, environ=None):
        self.config = config
        self._environ = dict(os.environ if environ is None else environ)
        self._endpoint = parse_endpoint(config.url)
        self._context = None
        self.outbox = Outbox()
        self.history = History()
        self.policy = ReconnectPolicy(
            config.reconnect_max_seconds, config.heartbeat_seconds
        )
        self.duplicates = DuplicateWatch(config.duplicate_wait_seconds)
        self.heartbeat = Heartbeat(config.heartbeat_seconds, self.outbox)
        self.executor = Executor(
            config.work_dir,
            self._command_environment(environ, config.token),
            config.pool_size,
            config.command_timeout_seconds,
            shell_argv(config.login_shell, self._environ),
            after_command=self._after_command,
        )
        self._token = config.token
        self.audit = AuditLog(config.audit_log) if config.audit_log else None
        self._stop_at = None
        self._cancel_until = None
        self._connection = None
        self._session = None
        self._signals = collections.deque()
        self._state = ("connecting", time.time())
        self._sessions = 0
        self.status_file = None
        self.status_writer = None
        if config.state_dir:
            self.status_file = StatusFile(
                config.state_dir,
                config.connection_id,
                {"version": VERSION, "url": config.url, "workDir": config.work_dir},
            )
            self.status_writer = StatusWriter(self.status_file, self.status_snapshot)

    def _command_environment(self, environ, token):
        """None when commands inherit the process environment (cleaned
        here first); otherwise the given environment, cleaned."""
        if environ is None or environ is os.environ:
            clean_process_environment([token])
            return None
        return child_environment(self._environ, [token])

    def run(self):
        """Serve until stopped; returns the process exit status."""
        if self.status_file is not None:
            self.status_file.acquire(self.status_snapshot())
            self.status_writer.start()
        try:
            return self._run()
        finally:
            self._set_state("stopping")
            if self.status_writer is not None:
                self.status_writer.stop()
                self.status_file.release()
            if self.audit is not None:
                self.audit.close()

    def _run(self):
        self._install_signals()
        self.heartbeat.start()
        try:
            return self._serve()
        except ShutdownRequested as exc:
            log.warning("signal %d again: cancelling running commands", exc.signum)
            self.executor.cancel()
            if self._connection is not None:
                self._connection.close(1000)
            return 128 + exc.signum
        finally:
            self.heartbeat.stop()
            self.executor.cancel()
            self.executor.shutdown()
            self.outbox.close()

    def _serve(self):
        while True:
            self.checkpoint()
            if self._stop_at is not None and self._stop_while_offline():
                return 0
            self._set_state("connecting")
            try:
                self._connection = self._connect()
            except ConnectionLost as exc:
                self._pause(exc, in_session=False)
                continue
            self.policy.connected(time.monotonic())
            self._sessions += 1
            self._set_state("connected")
            log.info("connected to %s", self.config.url)
            self._session = Session(
                self._connection, self.outbox, self, self.config.heartbeat_seconds
            )
            try:
                self._session.run(self._info())
                log.info("session closed; agent stopped")
                return 0
            except ConnectionLost as exc:
                self._connection = self._session = None
                self._set_state("connecting")
                self.policy.disconnected(time.monotonic())
                self._pause(exc, in_session=True)

    def _connect(self):
        """The start-up checks, then the WebSocket session."""
        if self._context is None:
            self._context = tls_context(self.config.ca_file, self._environ)
        config, endpoint = self.config, self._endpoint
        self._reread_token()
        args = (endpoint, config.url, self._token, self._context, self._environ)
        log.debug("checking %s/service-info", config.url)
        api.check_service_info(*args)
        log.debug("checking the access token at %s/user", config.url)
        api.check_user(*args)
        log.debug("opening the WebSocket for connection %s", config.connection_id)
        return Connection.open(
            endpoint,
            config.connection_id,
            self._token,
            self._context,
            self._environ,
            self._user_timeout(),
        )

    def _reread_token(self):
        """With --token-file, read it again: the token may have rotated."""
        path = self.config.token_file
        if not path:
            return
        try:
            token = cfg.read_token_file(path)
        except cfg.InsecureTokenFile:
            raise
        except ConfigError as exc:
            log.warning("%s; keeping the token read before", exc)
            return
        if token != self._token:
            logs.add_secret(token)
            self._token = token
            log.info("the token in %s changed; using the new one", path)

    def _user_timeout(self):
        return min(300.0, max(10.0, 3 * self.config.heartbeat_seconds))

    def _info(self):
        return InfoMessage(self.config.user_name, self.config.work_dir, VERSION)

    def _pause(self, exc, in_session):
        """Decide whether to go on after `exc`, and wait before the retry."""
        now = time.monotonic()
        if exc.close_code == CLOSE_DUPLICATE:
            self._on_duplicate(now)
        elif in_session:
            self.duplicates.session_ok()
        elif not self.duplicates.had_session:
            self._fail_fast(exc)
        delay = self.policy.next_delay(exc.close_code)
        if delay > 0:
            log.info("%s; reconnecting in %.1fs", exc.reason, delay)
        else:
            log.info("%s; reconnecting now", exc.reason)
        self._sleep(delay)

    def _on_duplicate(self, now):
        left = self.duplicates.refused(now)
        if left <= 0:
            raise DuplicateAgentError(
                f"another agent is connected for user {self.config.user_name} and connection ID {self.config.connection_id}; "
                f"giving up after {self.duplicates.window():.0f}s"
            )
        if self.duplicates.is_first_refusal(now):
            log.warning(
                "another agent seems connected for connection ID %s (close 4000); "
                "if it is our own old session the platform will drop it: retrying "
                "for up to %.0fs",
                self.config.connection_id,
                left,
            )

    def _fail_fast(self, exc):
        """Before any session existed, some failures will not heal."""
        if isinstance(exc, TlsError):
            raise ConfigError(exc.reason) from exc
        if isinstance(exc, ProxyError) and exc.status == 407:
            raise ConfigError(exc.reason) from exc
        if isinstance(exc, HandshakeRefused) and exc.status == 404:
            raise ConfigError(
                f"the platform does not know connection ID {self.config.connection_id} (HTTP 404 on "
                "connect)"
            ) from exc

    def _sleep(self, seconds):
        """Wait, but wake at once for a stop request."""
        end = time.monotonic() + seconds
        while self._stop_at is None:
            left = end - time.monotonic()
            if left <= 0:
                return
            select.select([self.outbox], [], [], left)
            self.outbox.clear_wakeups()
            self.checkpoint()

    def _stop_while_offline(self):
        """Stopping with no session: wait out the grace, then cancel."""
        while self.executor.active() and time.monotonic() < self._stop_at:
            select.select([self.outbox], [], [], self._stop_at - time.monotonic())
            self.outbox.clear_wakeups()
            self.checkpoint()
        if self.executor.active():
            log.warning("stop grace spent; cancelling running commands")
            self.executor.cancel()
        log.info("stopped while not connected")
        return True

    # Called by the session on the main thread.

    def on_request(self, request):
        if self._stop_at is not None:
            log.info("command %s refused: the agent is stopping", request.id)
            text = b"tw-agent: the agent is stopping and takes no new commands\n"
            self.outbox.put_response(CommandResponse(request.id, text, 1))
            return
        if not self.history.start(request.id):
            self._repeat(request)
            return
        log.info("command %s started", request.id)
        if self.audit is not None:
            self.audit.started(request)
        self.executor.submit(request, self._on_done)
        # After submit(), which adds the id to the running list: a snapshot
        # taken in between would miss it, and no later change would come.
        self._status_changed()

    def _repeat(self, request):
        stored = self.history.lookup(request.id)
        if self._session is not None:
            # Sent but not yet confirmed: the full answer is still at hand,
            # where the history may keep only a note for a big one.
            stored = self._session.unconfirmed(request.id) or stored
        if stored is None:
            log.info(
                "command %s is already running; one response will follow", request.id
            )
            return
        if self.outbox.holds(request.id):
            # Its answer waits in the outbox (it finished while we were
            # offline): that copy, sent after this ask, answers it.
            log.info("command %s already ran; its response is on its way", request.id)
            return
        log.info("command %s already ran; sending its response again", request.id)
        self.outbox.put_response(stored)

    def _on_done(self, response):
        """On a pool worker: keep the response for repeats, then queue it."""
        self.history.finish(response)
        self.outbox.put_response(response)
        if self.audit is not None:
            self.audit.finished(response)

    def _after_command(self, idle):
        """On a pool worker, once a command has left the running list."""
        self._status_changed()
        if idle and self._stop_at is not None:
            # A stopping agent waits for the last command, and an answer
            # into a non-empty outbox wakes no one.
            self.outbox.wake()

    def reject(self, request_id, reason):
        text = (f"tw-agent: bad command request: {reason}\n").encode()
        self.outbox.put_response(CommandResponse(request_id, text, 1))

    def ready_to_close(self):
        if self._stop_at is None:
            return False
        now = time.monotonic()
        idle = self.executor.active() == 0 and self.outbox.pending() == 0
        if idle:
            return True
        if self._cancel_until is None and now >= self._stop_at:
            log.warning("stop grace spent; cancelling running commands")
            self.executor.cancel()
            self._cancel_until = time.monotonic() + CANCEL_FLUSH_SECONDS
        return self._cancel_until is not None and now >= self._cancel_until

    def deadline(self):
        if self._cancel_until is not None:
            return self._cancel_until
        return self._stop_at if self._stop_at is not None else NEVER

    # Signals.

    def _install_signals(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(signum, self._on_signal)
        # Children must see SIGQUIT at its default even when we were
        # started with it ignored (`cmd &` in a script ignores it).
        signal.signal(signal.SIGQUIT, signal.SIG_DFL)

    def _on_signal(self, signum, frame):
        self._signals.append(signum)
        self.outbox.wake()

    def request_stop(self):
        """Stop as a first SIGTERM would; safe from any thread while running."""
        self._on_signal(STOP_REQUEST, None)

    def checkpoint(self):
        """Act on the signals received so far; main thread, once a turn."""
        while self._signals:
            signum = self._signals.popleft()
            if signum == signal.SIGHUP:
                log.info("SIGHUP ignored: the agent keeps running after a logout")
            elif self._stop_at is not None:
                raise ShutdownRequested(signum)
            else:
                grace = self.config.stop_grace_seconds
                log.info(
                    "%s: stopping; no new commands, running ones have %.0fs",
                    "stop requested" if signum == STOP_REQUEST else f"signal {signum}",
                    grace,
                )
                self._stop_at = time.monotonic() + grace
                self._set_state("stopping")

    # The status file.

    def _set_state(self, state):
        """Main thread: note the new state and write it out at once."""
        if self._state[0] != state and self._state[0] != "stopping":
            self._state = (state, time.time())
            if self.status_writer is not None:
                self.status_writer.write_now()

    def _status_changed(self):
        if self.status_writer is not None:
            self.status_writer.changed()

    def status_snapshot(self):
        """The status file's changing fields; read on the status thread.

        Each field is one attribute read or a locked copy, so a snapshot
        taken while the main thread moves on is at worst a turn old.
        """
        state, since = self._state
        connection = self._connection
        return {
            "state": state,
            "since": since,
            "lastFrame": getattr(connection, "last_frame_at", None),
            "reconnects": max(0, self._sessions - 1),
            "running": self.executor.running_ids(),
        }


def shell_argv(login_shell, environ):
    """How a command is run: `sh -c`, or the user's login shell with -l."""
    if not login_shell:
        return ["sh", "-c"]
    shell = environ.get("SHELL", "").strip()
    # csh and tcsh take -l only as their sole flag, so `-l -c` fails there.
    csh = os.path.basename(shell) in CSH_SHELLS
    if shell and not csh and os.path.isabs(shell) and os.access(shell, os.X_OK):
        return [shell, "-l", "-c"]
    bash = shutil.which("bash", path=environ.get("PATH"))
    if bash:
        why = "is a csh" if csh else "is unset or not runnable"
        log.warning("$SHELL %s; the login shell is %s -l -c", why, bash)
        return [bash, "-l", "-c"]
    raise ConfigError("--login-shell: $SHELL is unset and no bash is on PATH")
