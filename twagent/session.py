"""One connected session: the main thread's receive-and-send loop.

The main thread alone reads and writes the socket. It sleeps in select()
on the socket and the outbox's wake-up pipe, and on each turn sends what
the outbox holds, reads what has arrived, and checks that the link lives.

Responses count as delivered only once a later pong or heartbeat reply
shows that the platform read past them; when a session dies, the rest go
back to the outbox for the next one.
"""

import collections
import logging
import time

from . import memory, messages, wire
from .connection import close_code, ping_frame, text_frame, wait_readable
from .errors import ConnectionLost, ProtocolError
from .messages import HeartbeatMessage

log = logging.getLogger(__name__)

OPCODE_TEXT, OPCODE_BINARY, OPCODE_CLOSE, OPCODE_PING, OPCODE_PONG = 1, 2, 8, 9, 10
# The link is dead when nothing at all arrived for this many intervals;
# the platform answers each heartbeat and each ping within milliseconds.
DEAD_AFTER_INTERVALS = 2.25
FRAMES_PER_TURN = 32
BIG_FRAME_BYTES = 64 * 1024
FLUSH_BYTES_PER_TURN = 4 * 1024 * 1024


class Session:
    def __init__(self, connection, outbox, agent, heartbeat_seconds):
        self._conn = connection
        self._outbox = outbox
        self._agent = agent
        self._dead_after = DEAD_AFTER_INTERVALS * heartbeat_seconds
        # A write stuck this long is into a dead link as well.
        connection.send_timeout = max(1.0, self._dead_after)
        self._last_received = time.monotonic()
        self._sent_seq = 0
        self._unconfirmed = collections.deque()
        self._confirming = False
        self._heartbeat_marks = collections.deque()

    def run(self, info):
        """Serve until the agent is done (returns) or the link ends (raises)."""
        self._outbox.take_heartbeat()  # a tick from before this session
        try:
            self._send(messages.encode(info))
            while True:
                readable = self._wait()
                self._outbox.clear_wakeups()
                self._agent.checkpoint()
                self._flush()
                if readable:
                    self._read()
                self._check_alive()
                if self._agent.ready_to_close():
                    self._close()
                    return
        except ConnectionLost:
            self._conn.abort()
            self._outbox.push_back(r for _, r in self._unconfirmed)
            raise

    def _wait(self):
        """Sleep until there is work; True when the socket has data."""
        if self._conn.has_buffered():
            return True
        deadline = min(self._last_received + self._dead_after, self._agent.deadline())
        timeout = 0.0 if self._outbox.pending() else deadline - time.monotonic()
        ready = wait_readable([self._conn, self._outbox], timeout)
        return self._conn in ready

    def _flush(self):
        """Send what the outbox holds, in one write while it is small."""
        frames = []
        if self._outbox.take_heartbeat():
            log.debug("sending heartbeat")
            frames.append(text_frame(messages.encode(HeartbeatMessage())))
            self._heartbeat_marks.append(self._sent_seq)
            frames.append(ping_frame(str(self._sent_seq)))
        # A turn sends a few MiB at most, so that heartbeats and reading
        # keep their turn while a burst of big answers goes out.
        budget = FLUSH_BYTES_PER_TURN
        sent, big = 0, False
        while budget > 0:
            response = self._outbox.take_response()
            if response is None:
                break
            payload = self._response_frame(response)
            frames.append((wire.OPCODE_TEXT, payload))
            budget -= payload.length
            sent += 1
            big = big or payload.length >= BIG_FRAME_BYTES
        if sent and not self._confirming:
            # One confirmation ping in flight at a time: its pong confirms
            # everything sent before it, and the next goes out then.
            self._confirming = True
            frames.append(ping_frame(str(self._sent_seq)))
        if frames:
            self._conn.send_frames(frames)
        if big:
            # The platform answers our pings only after it has read these
            # frames, so its silence so far is no sign of a dead link. (A
            # dead link fills the socket buffers soon and the send times out.)
            self._last_received = max(self._last_received, time.monotonic())

    def _response_frame(self, response):
        self._sent_seq += 1
        self._unconfirmed.append((self._sent_seq, response))
        payload = wire.response_payload(
            response.id, response.output, response.exit_status
        )
        log.debug("sending command-response %s (%d bytes)", response.id, payload.length)
        return payload

    def _send(self, text):
        self._conn.send_text(text)

    def _read(self):
        for _ in range(FRAMES_PER_TURN):
            frame = self._conn.recv_frame()
            if frame is None:
                return
            self._last_received = time.monotonic()
            self._on_frame(frame)
            if not self._conn.has_buffered() and not self._readable_now():
                return

    def _readable_now(self):
        return bool(wait_readable([self._conn], 0))

    def _on_frame(self, frame):
        if frame.opcode == OPCODE_CLOSE:
            code = close_code(frame)
            raise ConnectionLost(f"platform closed the session ({code})", code)
        if frame.opcode == OPCODE_PONG:
            self._confirm(_seq_of(frame.data))
            self._confirming = False
            # With answers waiting in the outbox, the next flush (at once)
            # sends the next ping in the same write as them.
            if self._unconfirmed and not self._outbox.pending():
                self._confirming = True
                self._conn.send_ping(str(self._sent_seq))
            return
        if frame.opcode not in (OPCODE_TEXT, OPCODE_BINARY):
            return
        try:
            message = messages.decode(frame.data)
        except ProtocolError as exc:
            log.warning("ignored a message from the platform: %s", exc)
            if exc.request_id is not None:
                self._agent.reject(exc.request_id, str(exc))
            return
        if isinstance(message, HeartbeatMessage):
            log.debug("heartbeat received")
            if self._heartbeat_marks:
                self._confirm(self._heartbeat_marks.popleft())
            return
        self._agent.on_request(message)

    def unconfirmed(self, request_id):
        """The response to this id if it was sent and is not yet confirmed."""
        return next((r for _, r in self._unconfirmed if r.id == request_id), None)

    def _confirm(self, seq):
        big = False
        while self._unconfirmed and self._unconfirmed[0][0] <= seq:
            _, response = self._unconfirmed.popleft()
            big = big or len(response.output) >= memory.BIG_ANSWER_BYTES
        if big:
            del response
            memory.release()

    def _check_alive(self):
        silent = time.monotonic() - self._last_received
        if silent > self._dead_after:
            raise ConnectionLost(f"no frame from the platform for {silent:.1f}s")

    def _close(self):
        log.debug("closing the session with 1000")
        self._conn.close(1000)


def _seq_of(data):
    try:
        return int(data.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return -1
