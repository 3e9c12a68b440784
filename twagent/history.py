"""Responses already given, so a repeated request id is not run twice.

`_lock` guards everything: the main thread starts and looks up requests,
the outbox side finishes them. Bounded by count, bytes and age: the oldest
entries go first, so memory stays flat however long the agent runs.
"""

import collections
import threading
import time

MAX_ENTRIES = 2000
MAX_BYTES = 4 * 1024 * 1024
# A bigger output is not kept: a repeat of its request gets the exit
# status and a note instead, so it still never runs twice.
MAX_ENTRY_BYTES = 256 * 1024
MAX_AGE_SECONDS = 24 * 3600.0


class History:
    def __init__(
        self,
        max_entries=MAX_ENTRIES,
        max_bytes=MAX_BYTES,
        max_age_seconds=MAX_AGE_SECONDS,
        clock=time.monotonic,
    ):
        self._entries = collections.OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._max_age = max_age_seconds
        self._clock = clock
        self._bytes = 0
        self._running = set()
        self._lock = threading.Lock()

    def __len__(self):
        return len(self._entries)

    @property
    def stored_bytes(self):
        return self._bytes

    def start(self, request_id):
        """Note a request as running; False if the id was seen before."""
        with self._lock:
            self._expire()
            if request_id in self._running or request_id in self._entries:
                return False
            self._running.add(request_id)
            return True

    def finish(self, response):
        with self._lock:
            self._store(response)

    def lookup(self, request_id):
        with self._lock:
            self._expire()
            entry = self._entries.get(request_id)
            return entry[1] if entry else None

    def _store(self, response):
        self._running.discard(response.id)
        if len(response.output) > MAX_ENTRY_BYTES:
            note = "tw-agent: request %s already ran; its output (%d bytes) is no "
            note += "longer held\n"
            text = note % (response.id, len(response.output))
            response = response._replace(output=text.encode())
        old = self._entries.pop(response.id, None)
        if old is not None:
            self._bytes -= len(old[1].output)
        self._entries[response.id] = (self._clock(), response)
        self._bytes += len(response.output)
        self._expire()

    def _expire(self):
        oldest = self._clock() - self._max_age
        while self._entries:
            stamp, response = next(iter(self._entries.values()))
            too_many = len(self._entries) > self._max_entries
            if not (too_many or self._bytes > self._max_bytes or stamp < oldest):
                return
            self._entries.popitem(last=False)
            self._bytes -= len(response.output)
