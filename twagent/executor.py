"""Running the platform's commands: `sh -c` in a pool of worker threads.

`Executor.submit()` is called by the main thread; each command then runs on
a `twagent-exec` worker, which reads its output and hands the response to
the callback (the outbox). `_lock` guards `_running` (request id -> child),
which `cancel()` walks from the main thread.

A spawn is most of a short command's cost, so the worker gives Popen as
little to do as it can: the environment is inherited rather than passed
(Popen re-encodes a passed one, two calls per variable, on every spawn),
stdin is one /dev/null descriptor opened at start, and the output pipe is
a bare pair of descriptors with no file object around it.
"""

import concurrent.futures
import logging
import os
import select
import shutil
import signal
import subprocess
import threading
import time
import typing

from .logs import shorten
from .messages import CommandResponse

log = logging.getLogger(__name__)

MAX_OUTPUT_BYTES = 10485760 - 100
READ_CHUNK_BYTES = 1 << 16
DRAIN_SECONDS = 1.0
KILL_GRACE_SECONDS = 5.0
TIMEOUT_EXIT_STATUS = 124
# The reader checks whether the shell has exited at these growing
# intervals, so a long quiet command wakes its worker once a second at most.
FIRST_POLL_SECONDS = 0.02
LAST_POLL_SECONDS = 1.0


class Output(typing.NamedTuple):
    data: bytes
    total_bytes: int
    timed_out: bool


def exit_status(returncode):
    """The shell's status as a shell reports it: 128 + N for signal N."""
    return 128 - returncode if returncode < 0 else returncode


def child_environment(environ, secrets):
    """The agent's environment without any variable that holds a secret."""
    clean = {}
    for name, value in environ.items():
        if name == "TOWER_ACCESS_TOKEN":
            continue
        if any(secret and secret in value for secret in secrets):
            continue
        clean[name] = value
    return clean


def clean_process_environment(secrets):
    """Drop from the agent's own environment what no command may see, so
    that commands can inherit it (main thread, before any worker runs)."""
    keep = child_environment(os.environ, secrets)
    for name in [name for name in os.environ if name not in keep]:
        del os.environ[name]


class Executor:
    """Runs commands; `environ` is their environment, or None for the
    agent's own, which the caller has cleaned with
    `clean_process_environment()`. `after_command(idle)`, if given, is
    called on the worker once a command's answer is handed on and it has
    left the running list; `idle` is True when no command is left."""

    def __init__(
        self,
        work_dir,
        environ,
        pool_size,
        timeout_seconds,
        shell_argv,
        after_command=None,
    ):
        self._work_dir = work_dir
        self._after_command = after_command
        self._environ = None if environ is None else _encoded(environ)
        self._timeout = timeout_seconds
        self._shell_argv = _resolved(
            shell_argv, os.environ if environ is None else environ
        )
        self._devnull = os.open(os.devnull, os.O_RDONLY)
        self._lock = threading.Lock()
        self._running = {}
        # Set once by cancel(); a worker whose child started just after
        # cancel() looked at `_running` sees it on its next poll.
        self._cancelled = threading.Event()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=pool_size, thread_name_prefix="twagent-exec"
        )

    def submit(self, request, on_done):
        """Run the request on a worker; `on_done(response)` gets the result."""
        with self._lock:
            self._running[request.id] = None
        self._pool.submit(self._work, request, on_done)

    def active(self):
        with self._lock:
            return len(self._running)

    def running_ids(self):
        with self._lock:
            return list(self._running)

    def cancel(self):
        """TERM each running command's process group, then KILL it."""
        self._cancelled.set()
        with self._lock:
            children = [c for c in self._running.values() if c is not None]
        for child in children:
            _signal_group(child, signal.SIGTERM)
        deadline = time.monotonic() + KILL_GRACE_SECONDS
        for child in children:
            try:
                child.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            _signal_group(child, signal.SIGKILL)

    def shutdown(self):
        self._pool.shutdown(wait=True)
        if self._devnull is not None:
            os.close(self._devnull)
            self._devnull = None

    def _work(self, request, on_done):
        started = time.monotonic()
        try:
            response = self.run(request)
        except Exception as exc:
            log.exception("command %s failed inside the agent", request.id)
            text = f"tw-agent: internal error running the command: {exc}\n"
            response = CommandResponse(request.id, text.encode(), 1)
        # Handed on before it leaves `_running`: a command counts as active
        # until its answer is queued, so a stopping agent never sees "no
        # command running, nothing to send" while an answer is on its way.
        try:
            on_done(response)
        except Exception:
            log.exception("could not queue the response to %s", request.id)
        with self._lock:
            self._running.pop(request.id, None)
            idle = not self._running
        if self._after_command is not None:
            self._after_command(idle)
        # Logged once the answer is queued, so the main thread sends it
        # while this line is written.
        log.info(
            "command %s finished: exit %d in %.3fs",
            request.id,
            response.exit_status,
            time.monotonic() - started,
        )

    def run(self, request):
        """Run one command to its end; always returns its response."""
        log.debug("command %s: %s", request.id, shorten(request.command))
        started = time.monotonic()
        try:
            child, output_fd = self._spawn(request.command)
        except (OSError, ValueError) as exc:
            # ValueError: a NUL byte in the command line, which no exec takes.
            log.warning("command %s could not start: %s", request.id, exc)
            text = f"tw-agent: cannot start the command: {exc}\n"
            return CommandResponse(request.id, text.encode(), 1)
        with self._lock:
            self._running[request.id] = child
        try:
            output = self._collect(child, output_fd, started)
        except BaseException:
            # Its output is lost, so it cannot be answered: end it and reap
            # it rather than leave it running or a zombie.
            _signal_group(child, signal.SIGKILL)
            child.wait()
            raise
        finally:
            os.close(output_fd)
        status = self._finish(child, output, request.id)
        data = output.data
        if output.timed_out:
            note = "\ntw-agent: command timed out after %gs and was killed\n"
            data += (note % self._timeout).encode()
        return CommandResponse(request.id, data, status)

    def _spawn(self, command):
        """The shell running `command`, and the read end of its output."""
        read_fd, write_fd = os.pipe()
        try:
            child = subprocess.Popen(
                self._shell_argv + [command],
                stdin=self._devnull,
                stdout=write_fd,
                stderr=subprocess.STDOUT,
                cwd=self._work_dir,
                env=self._environ,
                close_fds=True,
                start_new_session=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            # Only the child may hold the write end, or EOF never comes.
            os.close(write_fd)
        return child, read_fd

    def _finish(self, child, output, request_id):
        child.wait()
        if output.total_bytes > MAX_OUTPUT_BYTES:
            log.warning(
                "command %s: output truncated at %d bytes (it wrote %d)",
                request_id,
                MAX_OUTPUT_BYTES,
                output.total_bytes,
            )
        if output.timed_out:
            return TIMEOUT_EXIT_STATUS
        return exit_status(child.returncode)

    def _collect(self, child, output_fd, started):
        """Read the merged output until EOF, or a short drain after exit."""
        reader = OutputReader(output_fd)
        deadline = started + self._timeout
        drain_until = None
        poll = FIRST_POLL_SECONDS
        timed_out = killed = False
        while not reader.eof:
            now = time.monotonic()
            if drain_until is not None and now >= drain_until:
                break
            if not killed and (now >= deadline or self._cancelled.is_set()):
                timed_out, killed = now >= deadline, True
                self._kill(child)
                drain_until = time.monotonic() + DRAIN_SECONDS
            limit = drain_until if drain_until is not None else deadline
            reader.read_for(min(poll, max(0.0, limit - now)))
            poll = min(poll * 2, LAST_POLL_SECONDS)
            # Looked at after a read, so that a command which closes its
            # output as it exits costs no extra wait call.
            if drain_until is None and not reader.eof and child.poll() is not None:
                drain_until = time.monotonic() + DRAIN_SECONDS
        return Output(reader.data(), reader.total, timed_out)

    def _kill(self, child):
        _signal_group(child, signal.SIGTERM)
        try:
            child.wait(KILL_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            log.warning("command pid %d ignored SIGTERM; killing it", child.pid)
        _signal_group(child, signal.SIGKILL)


class OutputReader:
    """Keeps the first MAX_OUTPUT_BYTES of a pipe, counts and drops the rest."""

    def __init__(self, fd):
        self._fd = fd
        self._kept = bytearray()
        self.total = 0
        self.eof = False

    def read_for(self, seconds):
        """Read whatever arrives within `seconds`; stop early at EOF."""
        end = time.monotonic() + seconds
        while not self.eof:
            ready, _, _ = select.select([self._fd], [], [], seconds)
            if not ready:
                return
            self._read_once()
            seconds = end - time.monotonic()
            if seconds <= 0:
                return

    def _read_once(self):
        chunk = os.read(self._fd, READ_CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return
        self.total += len(chunk)
        room = MAX_OUTPUT_BYTES - len(self._kept)
        if room > 0:
            self._kept += chunk[:room]

    def data(self):
        """The kept output; a bytearray, so that it is never copied whole."""
        return self._kept


def _encoded(environ):
    """The environment as bytes, encoded once rather than on every spawn."""
    return {os.fsencode(k): os.fsencode(v) for k, v in environ.items()}


def _resolved(argv, environ):
    """argv with its program looked up on PATH once, at start."""
    if os.sep in argv[0]:
        return list(argv)
    found = shutil.which(argv[0], path=environ.get("PATH", os.defpath))
    return [found or argv[0]] + list(argv[1:])


def _signal_group(child, signum):
    try:
        os.killpg(child.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass
