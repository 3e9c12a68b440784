"""The audit log: one JSON line per command the platform ran as this user.

`started()` is called by the main thread when a request is accepted,
`finished()` by the pool worker that ran it. `_lock` guards the start
times and the file, so lines from several workers never interleave.
"""

import json
import logging
import os
import threading
import time

from .logs import redact

log = logging.getLogger(__name__)

AUDIT_COMMAND_CHARS = 400


class AuditLog:
    def __init__(self, path):
        self.path = path
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self._file = os.fdopen(fd, "a", encoding="utf-8")
        self._lock = threading.Lock()
        self._started = {}

    def started(self, request):
        with self._lock:
            self._started[request.id] = (time.monotonic(), request.command)

    def finished(self, response):
        """Write the line for `response`; a failing write only warns."""
        with self._lock:
            began, command = self._started.pop(response.id, (None, ""))
            duration = time.monotonic() - began if began is not None else None
            line = json.dumps(_record(response, command, duration), sort_keys=True)
            try:
                self._file.write(line + "\n")
                self._file.flush()
            except OSError as exc:
                log.warning("cannot write the audit log %s: %s", self.path, exc)

    def close(self):
        with self._lock:
            self._file.close()


def _record(response, command, duration):
    # Redact before cutting, so that a cut cannot leave half a token.
    command = redact(command)
    if len(command) > AUDIT_COMMAND_CHARS:
        command = command[:AUDIT_COMMAND_CHARS] + "..."
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "id": response.id,
        "exitStatus": response.exit_status,
        "seconds": None if duration is None else round(duration, 3),
        "outputBytes": len(response.output),
        "command": command,
    }
