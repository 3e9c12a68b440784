"""Log set-up for the command line: format, level and token redaction.

Only `cli.py` calls `configure()`; every other module just logs. The
redaction lives in the formatter so that it covers the message, its
arguments and any traceback alike.
"""

import logging
import sys

TRACE_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s - %(message)s"
CONSOLE_DATE_FORMAT = "%H:%M:%S"
REDACTED = "[REDACTED]"


class RedactingFormatter(logging.Formatter):
    """A formatter that blanks out every secret it has been told about.

    `add_secret()` may be called from any thread; the set of secrets only
    grows, and replacing the tuple is atomic.
    """

    def __init__(self, fmt, datefmt):
        super().__init__(fmt, datefmt)
        self._secrets = ()

    def add_secret(self, secret):
        if secret and len(secret) >= 4 and secret not in self._secrets:
            self._secrets = self._secrets + (secret,)

    def format(self, record):
        text = super().format(record)
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return text


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
    # websocket-client's own trace would print the Authorization header.
    logging.getLogger("websocket").setLevel(logging.WARNING)
    return formatter


def add_secret(secret):
    """Redact `secret` in every handler set up by `configure()`."""
    for handler in logging.getLogger().handlers:
        formatter = handler.formatter
        if isinstance(formatter, RedactingFormatter):
            formatter.add_secret(secret)


def shorten(text, limit=200):
    """A command line cut for the log."""
    if len(text) <= limit:
        return text
    return text[:limit] + f"... ({len(text)} chars)"
