"""Log set-up for the command line: format, level, log file, token redaction.

Only `cli.py` calls `configure()` and `add_file()`; every other module just
logs. The redaction lives in the formatter so that it covers the message,
its arguments and any traceback alike; `redact()` applies the same to text
that is printed or written without logging (check lines, the audit log).
"""

import logging
import logging.handlers
import os
import sys

TRACE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s - %(message)s"
CONSOLE_DATE_FORMAT = "%H:%M:%S"
# A log file outlives days: each line carries the full date.
FILE_DATE_FORMAT = "%Y-%m-%d %H:%M:%S"
LOG_FILE_MAX_BYTES = 10 * 1024 * 1024
LOG_FILE_KEEP = 5
REDACTED = "[REDACTED]"
MIN_SECRET_CHARS = 4

# Every secret seen so far. It only grows; `add_secret()` may run on any
# thread and swaps the tuple whole, which readers see atomically.
_secrets = ()


def add_secret(secret):
    """Redact `secret` from now on, in every log line and in `redact()`."""
    global _secrets
    if secret and len(secret) >= MIN_SECRET_CHARS and secret not in _secrets:
        _secrets = _secrets + (secret,)


def redact(text):
    """`text` with every known secret replaced by [REDACTED]."""
    for secret in _secrets:
        text = text.replace(secret, REDACTED)
    return text


class RedactingFormatter(logging.Formatter):
    """A formatter that blanks out every secret given to `add_secret()`."""

    def add_secret(self, secret):
        add_secret(secret)

    def format(self, record):
        return redact(super().format(record))


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """Size-rotated log file whose every generation is created mode 0600."""

    def _open(self):
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        return os.fdopen(fd, "a", encoding=self.encoding or "utf-8")


def configure(trace, stream=None):
    """Log to standard output at INFO, or DEBUG when trace is on."""
    formatter = RedactingFormatter(TRACE_FORMAT, CONSOLE_DATE_FORMAT)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if trace else logging.INFO)
    # No format here shows the caller, thread or process; finding them
    # costs every record a stack walk and lookups, about a quarter of a log
    # line's cost, and each command logs two. (The logging HOWTO's
    # "Optimization" section names these switches.)
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # websocket-client's own trace would print the Authorization header.
    logging.getLogger("websocket").setLevel(logging.WARNING)
    return formatter


def add_file(path, max_bytes=LOG_FILE_MAX_BYTES, keep=LOG_FILE_KEEP):
    """Also log to `path`, rotated at `max_bytes`, keeping `keep` old files.

    Raises OSError when the file cannot be opened.
    """
    handler = PrivateRotatingFileHandler(
        path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8"
    )
    handler.setFormatter(RedactingFormatter(TRACE_FORMAT, FILE_DATE_FORMAT))
    logging.getLogger().addHandler(handler)
    return handler


def shorten(text, limit=200):
    """A command line cut for the log."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... ({len(text)} chars)"
