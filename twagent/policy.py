"""When to try again: exponential backoff with full jitter, and 4000s.

A pure object: it reads no clock and sleeps never; callers pass the time.
Main thread only.
"""

import random

FIRST_DELAY_SECONDS = 1.0
CLOSE_DUPLICATE = 4000
CLOSE_REAUTHENTICATE = 4001


class ReconnectPolicy:
    def __init__(self, max_delay_seconds, reset_after_seconds, rng=random.random):
        self.max_delay_seconds = max_delay_seconds
        self.reset_after_seconds = reset_after_seconds
        self._rng = rng
        self.attempt = 0
        self._connected_at = None

    def connected(self, now):
        self._connected_at = now

    def disconnected(self, now):
        """A session ended: if it lasted, the next failure starts afresh."""
        started = self._connected_at
        if started is not None and now - started >= self.reset_after_seconds:
            self.attempt = 0
        self._connected_at = None

    def next_delay(self, close_code=None):
        """Seconds to wait before the next attempt."""
        attempt = self.attempt
        self.attempt += 1
        if close_code == CLOSE_REAUTHENTICATE and attempt == 0:
            return 0.0
        ceiling = min(self.max_delay_seconds, FIRST_DELAY_SECONDS * 2.0**attempt)
        return ceiling * self._rng()


class DuplicateWatch:
    """How long to keep retrying while the platform answers 4000.

    After a session of ours existed in this process, a 4000 most likely
    names our own stale session, so we wait the full window; on a fresh
    process's first connection, a third of it.
    """

    def __init__(self, wait_seconds):
        self.wait_seconds = wait_seconds
        self.had_session = False
        self._first_refusal = None

    def session_ok(self):
        self.had_session = True
        self._first_refusal = None

    def window(self):
        return self.wait_seconds if self.had_session else self.wait_seconds / 3.0

    def refused(self, now):
        """Note a 4000; returns seconds left in the window (<= 0: give up)."""
        if self._first_refusal is None:
            self._first_refusal = now
        return self._first_refusal + self.window() - now

    def is_first_refusal(self, now):
        return self._first_refusal == now
