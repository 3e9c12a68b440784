"""The status file of a running agent, which is also its lease.

One JSON file per connection ID under $XDG_STATE_HOME/tw-agent/, mode
0600, always replaced whole (write a temporary file, then rename or link),
so a reader never sees half a record. It works over NFS: no flock, only
link() and rename(), which are atomic there too.

The main thread takes the lease (`StatusFile.acquire()`) and gives it
back (`release()`). The thread `twagent-status` (`StatusWriter.run()`)
rewrites the file every STATUS_REFRESH_SECONDS, and at once when
`StatusWriter.changed()` (any thread) sets `_wake`; `_stopped` is set by
`stop()` from the main thread. The main thread writes a state change
itself (`write_now()`), so that the file shows it before the next log line;
`_lock` keeps the two writers one at a time.
"""

import json
import logging
import os
import re
import socket
import sys
import threading
import time

from .errors import DuplicateAgentError

log = logging.getLogger(__name__)

STATUS_REFRESH_SECONDS = 15.0
# A lease not refreshed for this long is stale: its holder is gone or hung.
LEASE_STALE_SECONDS = 60.0
ACQUIRE_ATTEMPTS = 3
SUFFIX = ".json"


def status_path(directory, connection_id):
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", connection_id)
    return os.path.join(directory, safe + SUFFIX)


def read_record(path):
    """The record in `path`; None when it does not exist or is unreadable."""
    try:
        with open(path, encoding="utf-8") as stream:
            record = json.load(stream)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def staleness(record, now=None, host=None):
    """Why the lease in `record` is stale, or None while its holder lives."""
    now = time.time() if now is None else now
    host = socket.gethostname() if host is None else host
    try:
        age = now - float(record.get("updated", 0))
        pid = int(record.get("pid", 0))
    except (TypeError, ValueError):
        return "it is not a status record"
    if age > LEASE_STALE_SECONDS:
        return f"not refreshed for {age:.0f}s"
    if record.get("host") == host and not _pid_alive(pid):
        return f"pid {pid} is gone"
    return None


def agent_pid():
    """The PID a user sees for this agent.

    The onefile binary is a launcher whose child runs the agent; the
    launcher, which passes signals on, is the process the user started.
    """
    launcher = os.environ.get("NUITKA_ONEFILE_PARENT", "")
    if launcher.isdigit() and int(launcher) == os.getppid():
        return int(launcher)
    return os.getpid()


def _pid_alive(pid):
    if pid <= 0 or pid in (os.getpid(), agent_pid()):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_atomically(path, record):
    """Replace `path` with `record` in one step; the file is mode 0600."""
    temporary = _write_temporary(path, record)
    try:
        os.rename(temporary, path)
    except OSError:
        _unlink(temporary)
        raise


def _write_temporary(path, record):
    temporary = f"{path}.tmp-{os.getpid()}-{os.urandom(4).hex()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as stream:
        json.dump(record, stream, indent=1, sort_keys=True)
        stream.write("\n")
        stream.flush()
        os.fsync(stream.fileno())
    return temporary


def _unlink(path):
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class StatusFile:
    """This agent's record and the lease it stands for."""

    def __init__(self, directory, connection_id, fields):
        self.path = status_path(directory, connection_id)
        self.directory = directory
        self.connection_id = connection_id
        self.nonce = os.urandom(16).hex()
        now = time.time()
        self._base = dict(fields)
        self._base.update(
            pid=agent_pid(),
            host=socket.gethostname(),
            connectionId=connection_id,
            nonce=self.nonce,
            started=now,
        )
        self.held = False

    def record(self, fields=None):
        record = dict(self._base)
        record.update(fields or {})
        record["updated"] = time.time()
        return record

    def acquire(self, fields=None):
        """Take the lease, or raise DuplicateAgentError naming its holder."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        for _ in range(ACQUIRE_ATTEMPTS):
            if self._create(self.record(fields)):
                self.held = True
                return
            held = read_record(self.path)
            if held is None and not os.path.exists(self.path):
                continue
            why = self._why_stale(held)
            if why is None:
                raise DuplicateAgentError(_refusal(self.connection_id, held, self.path))
            log.warning(
                "taking over the stale lease of connection ID %s from pid %s on "
                "host %s (%s)",
                self.connection_id,
                (held or {}).get("pid", "?"),
                (held or {}).get("host", "?"),
                why,
            )
            self._remove_stale(held)
        raise DuplicateAgentError(
            f"could not take the lease {self.path}: other agents keep starting "
            f"for connection ID {self.connection_id}"
        )

    def _create(self, record):
        """Put our record in place only if no file is there (link is atomic)."""
        temporary = _write_temporary(self.path, record)
        try:
            os.link(temporary, self.path)
            return True
        except FileExistsError:
            return False
        finally:
            _unlink(temporary)

    def _why_stale(self, held):
        if held is not None:
            return staleness(held)
        # Unreadable: judge by the file's age alone.
        try:
            age = time.time() - os.stat(self.path).st_mtime
        except FileNotFoundError:
            return "it is gone"
        if age > LEASE_STALE_SECONDS:
            return f"unreadable and {age:.0f}s old"
        return None

    def _remove_stale(self, held):
        """Move the stale file away; put it back if it changed meanwhile."""
        aside = f"{self.path}.stale-{os.getpid()}-{self.nonce[:8]}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return
        moved = read_record(aside)
        if held is not None and (moved or {}).get("nonce") != held.get("nonce"):
            # Another agent took over between our read and our rename.
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
        _unlink(aside)

    def still_ours(self):
        """The record in the file now, when it is not ours; else None."""
        current = read_record(self.path)
        if current is not None and current.get("nonce") != self.nonce:
            return current
        return None

    def write(self, fields):
        write_atomically(self.path, self.record(fields))

    def release(self):
        """Remove the file, if it is still ours."""
        if self.held and self.still_ours() is None:
            _unlink(self.path)
        self.held = False


def _refusal(connection_id, held, path):
    held = held or {}
    host, pid = held.get("host", "?"), held.get("pid", "?")
    try:
        age = "%.0fs ago" % (time.time() - float(held.get("updated", 0)))
    except (TypeError, ValueError):
        age = "at an unknown time"
    return (
        f"another tw-agent already runs for connection ID {connection_id}: "
        f"pid {pid} on host {host} (status file {path}, refreshed {age}); "
        f"stop it first, or wait {LEASE_STALE_SECONDS:.0f}s if it is gone"
    )


MIN_WRITE_GAP_SECONDS = 1.0


class StatusWriter:
    """The `twagent-status` thread: keeps the status file fresh."""

    def __init__(self, status_file, snapshot, interval=STATUS_REFRESH_SECONDS):
        self._file = status_file
        self._snapshot = snapshot
        self._interval = interval
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._lost = False
        self._thread = threading.Thread(
            target=self.run, name="twagent-status", daemon=True
        )

    def start(self):
        self._thread.start()

    def changed(self):
        """Ask for a rewrite now; safe from any thread."""
        # Under load nearly every call finds the flag up already; set()
        # would still take the event's lock and notify. A flag seen up just
        # before run() clears it is no loss: the snapshot is taken after.
        if not self._wake.is_set():
            self._wake.set()

    def write_now(self):
        """Rewrite the file on the calling thread."""
        self._refresh()

    def run(self):
        log.debug("status thread started, every %.1fs", self._interval)
        while not self._stopped.is_set():
            self._wake.wait(self._interval)
            # A burst of changes (commands starting and ending) becomes one
            # write a second at most: the file is for people and cron.
            self._stopped.wait(MIN_WRITE_GAP_SECONDS)
            self._wake.clear()
            if self._stopped.is_set() or not self._refresh():
                break
        log.debug("status thread stopped")

    def _refresh(self):
        """Rewrite the file; False once another agent owns it."""
        with self._lock:
            if self._lost:
                return False
            self._lost = not self._write()
            return not self._lost

    def _write(self):
        taker = self._file.still_ours()
        if taker is not None:
            log.error(
                "the lease %s now names pid %s on host %s; no longer updating it",
                self._file.path,
                taker.get("pid"),
                taker.get("host"),
            )
            return False
        try:
            self._file.write(self._snapshot())
        except OSError as exc:
            log.warning("cannot write the status file %s: %s", self._file.path, exc)
        except Exception:
            log.exception("status snapshot failed; the next refresh will retry")
        return True

    def stop(self):
        self._stopped.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()


def report(directory, connection_ids=None, out=None, now=None):
    """Print each agent's status; 0 when every one named (or found) is
    running and connected, else 1. For `tw-agent --status`."""
    out = out or sys.stdout
    now = time.time() if now is None else now
    paths = _status_files(directory, connection_ids)
    if not paths:
        which = ", ".join(connection_ids or []) or "any connection ID"
        print(f"no tw-agent status for {which} in {directory}", file=out)
        return 1
    healthy = True
    for connection_id, path in paths:
        healthy = _report_one(connection_id, path, out, now) and healthy
    return 0 if healthy else 1


def _status_files(directory, connection_ids):
    if connection_ids:
        return [(c, status_path(directory, c)) for c in connection_ids]
    try:
        names = sorted(os.listdir(directory))
    except OSError:
        return []
    return [
        (name[: -len(SUFFIX)], os.path.join(directory, name))
        for name in names
        if name.endswith(SUFFIX)
    ]


def _report_one(connection_id, path, out, now):
    record = read_record(path)
    if record is None:
        print(f"{connection_id}: not running (no status file {path})", file=out)
        return False
    connection_id = record.get("connectionId", connection_id)
    why = staleness(record, now)
    state = record.get("state", "unknown")
    if why is not None:
        print(
            f"{connection_id}: not running; the status file is stale ({why})", file=out
        )
        state = "stale"
    else:
        since = _ago(now, record.get("since"))
        print(
            f"{connection_id}: {state} since {_when(record.get('since'))} ({since})",
            file=out,
        )
    for line in _details(record, now, path):
        print("  " + line, file=out)
    return why is None and state == "connected"


def _details(record, now, path):
    running = record.get("running") or []
    shown = ", ".join(str(r) for r in running[:5])
    if len(running) > 5:
        shown += ", ..."
    if running:
        shown = f" ({shown})"
    last = _ago(now, record.get("lastFrame"))
    reconnects = record.get("reconnects", 0)
    return [
        (
            f"pid {record.get('pid')} on host {record.get('host')}, "
            f"tw-agent {record.get('version')}, platform {record.get('url')}"
        ),
        (
            f"last frame received {last}, {reconnects} reconnects, "
            f"{len(running)} commands running{shown}"
        ),
        f"status file {path}, refreshed {_ago(now, record.get('updated'))}",
    ]


def _when(stamp):
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(stamp)))
    except (TypeError, ValueError):
        return "?"


def _ago(now, stamp):
    try:
        seconds = max(0.0, now - float(stamp))
    except (TypeError, ValueError):
        return "never"
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return "%.0fm ago" % (seconds / 60)
    if seconds < 172800:
        return "%.1fh ago" % (seconds / 3600)
    return "%.1fd ago" % (seconds / 86400)
