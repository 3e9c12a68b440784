"""The heartbeat thread (`twagent-heartbeat`): a tick every interval.

It never touches the socket: each tick asks the main thread, through the
outbox, to send a heartbeat and a ping. `_stopped` is set by `stop()` from
the main thread; the thread waits on it between ticks.
"""

import logging
import threading

log = logging.getLogger(__name__)


class Heartbeat:
    def __init__(self, interval_seconds, outbox):
        self.interval_seconds = interval_seconds
        self._outbox = outbox
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self.run, name="twagent-heartbeat", daemon=True
        )

    def start(self):
        self._thread.start()

    def run(self):
        log.debug("heartbeat thread started, every %.3fs", self.interval_seconds)
        while not self._stopped.wait(self.interval_seconds):
            try:
                self._outbox.request_heartbeat()
            except Exception:
                log.exception("heartbeat tick failed; the next one will retry")
        log.debug("heartbeat thread stopped")

    def stop(self):
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()
