"""Messages on their way to the platform, across sessions.

Pool workers and the heartbeat thread put into the outbox from their own
threads; only the main thread takes from it. Guarantees:
- `put_response()` and `request_heartbeat()` are safe from any thread and
  wake the main thread through a pipe (its read end is `fileno()`); a
  response wakes it only when the deque was empty: in a session the main
  thread looks at `pending()` before it sleeps and takes until the deque is
  empty. Between sessions it does not take, so whoever it waits for there
  calls `wake()` itself;
- `_lock` guards the deque and the flag; no one holds it while doing I/O;
- the deque holds at most `max_responses`; when full, the oldest response is
  dropped with a WARNING naming its id.
"""

import collections
import logging
import os
import threading

log = logging.getLogger(__name__)

MAX_PENDING_RESPONSES = 1000


class Outbox:
    def __init__(self, max_responses=MAX_PENDING_RESPONSES):
        self._lock = threading.Lock()
        self._responses = collections.deque()
        self._max = max_responses
        self._heartbeat_due = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)

    def fileno(self):
        return self._read_fd

    def put_response(self, response):
        with self._lock:
            first = not self._responses
            self._responses.append(response)
            dropped = self._drop_overflow()
        for old in dropped:
            log.warning(
                "outbox full (%d responses): dropped the response to %s",
                self._max,
                old.id,
            )
        if first:
            self.wake()

    def push_back(self, responses):
        """Put responses that may not have arrived back at the front."""
        with self._lock:
            self._responses.extendleft(reversed(list(responses)))
            dropped = self._drop_overflow()
        for old in dropped:
            log.warning("outbox full: dropped the response to %s", old.id)

    def request_heartbeat(self):
        with self._lock:
            self._heartbeat_due = True
        self.wake()

    def take_heartbeat(self):
        with self._lock:
            due, self._heartbeat_due = self._heartbeat_due, False
        return due

    def take_response(self):
        with self._lock:
            return self._responses.popleft() if self._responses else None

    def holds(self, request_id):
        """True while a response to this id waits to be sent."""
        with self._lock:
            return any(r.id == request_id for r in self._responses)

    def pending(self):
        with self._lock:
            return len(self._responses)

    def wake(self):
        try:
            os.write(self._write_fd, b"w")
        except BlockingIOError:
            pass  # the pipe is full, so the main thread is woken already

    def clear_wakeups(self):
        # One read: what a second one would find (a wake-up that came just
        # now) only costs a spare turn of the loop.
        try:
            os.read(self._read_fd, 65536)
        except BlockingIOError:
            pass

    def close(self):
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _drop_overflow(self):
        dropped = []
        while len(self._responses) > self._max:
            dropped.append(self._responses.popleft())
        return dropped
