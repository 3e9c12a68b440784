"""Fuzzing what the platform may send: the decoder, then a live agent.

In process, `messages.decode` must turn any payload into a message or a
ProtocolError, nothing else. End to end, one agent gets random frames,
each followed by a real command: the command must be answered, on the same
session. Frames that are command requests carry only harmless commands.

    python -m pytest tests/test_fuzz.py
"""

import json
import time
import uuid

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st

from twagent import messages
from twagent.errors import ProtocolError
from twagent.messages import CommandRequest, HeartbeatMessage

# Deeper than the recursion limit of any Python the agent runs on.
DEEP = 5000
MAX_LOG_LINE_CHARS = 4096
# Frames nested deeper need not be answered (see reply_id()).
MAX_EXPECTED_DEPTH = 500
# The only commands a fuzzed frame may ever carry as text. The last two
# cannot start at all (a NUL byte; a lone surrogate).
SAFE_COMMANDS = ("true", "echo fuzz", "exit 3", "printf x >&2", "echo\x00x", "\ud800")

# Strategies.

leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(),
    st.text(max_size=20),
)
json_values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
not_text = json_values.filter(lambda value: not isinstance(value, str))
kinds = st.sampled_from(
    ["command-request", "heartbeat", "info", "command-response", "", "Heartbeat"]
)


def request_like(commands):
    """Dicts shaped like requests, with any field missing or mistyped."""
    return st.fixed_dictionaries(
        {"@type": kinds | json_values},
        optional={
            "id": st.text(max_size=12) | json_values,
            "command": commands,
            "exitStatus": json_values,
            "result": json_values,
        },
    )


def nested(depth, opener, closer, inner=b"1"):
    return opener * depth + inner + closer * depth


deep_nesting = st.one_of(
    st.integers(1, DEEP).map(lambda d: nested(d, b"[", b"]")),
    st.integers(1, DEEP).map(lambda d: nested(d, b'{"a":', b"}")),
    st.integers(1, DEEP).map(
        lambda d: (
            b'{"@type":"command-request","id":"deep","command":"true","x":'
            + nested(d, b"[", b"]")
            + b"}"
        )
    ),
)
huge_numbers = st.one_of(
    st.integers(1, 6000).map(
        lambda n: b'{"@type":"command-request","id":%s,"command":"true"}' % (b"7" * n)
    ),
    st.integers(1, 6000).map(lambda n: b"9" * n),
    st.sampled_from(
        [
            b"1e999",
            b"-1e999",
            b'{"@type":"command-request","id":1e400,"command":"true"}',
        ]
    ),
)


def escaped_request(units):
    """A request whose id is JSON escapes of these UTF-16 code units."""
    escapes = "".join(f"\\u{u:04x}" for u in units)
    return (
        b'{"@type":"command-request","id":"' + escapes.encode() + b'","command":"true"}'
    )


# Ids of any UTF-16 code units: NUL, controls, lone surrogates.
escaped_ids = st.lists(st.integers(0, 0xFFFF), max_size=6).map(escaped_request)
invalid_utf8 = st.binary(max_size=64).map(lambda data: data + b"\xff\xfe")


def to_bytes(value):
    return json.dumps(value).encode("utf-8")


any_payload = st.one_of(
    st.binary(max_size=256),
    st.text(max_size=64).map(str.encode),
    json_values.map(to_bytes),
    request_like(json_values).map(to_bytes),
    deep_nesting,
    huge_numbers,
    escaped_ids,
    invalid_utf8,
)

# (a) In process: decode raises nothing but ProtocolError.


def check_decode(payload):
    try:
        message = messages.decode(payload)
    except ProtocolError:
        return
    assert isinstance(message, (HeartbeatMessage, CommandRequest))
    if isinstance(message, CommandRequest):
        assert isinstance(message.id, str) and message.id
        assert isinstance(message.command, str)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "payload",
    [nested(DEEP, b"[", b"]"), nested(DEEP, b'{"a":', b"}")],
    ids=["arrays", "objects"],
)
def test_messages_decode_deep_nesting_raises_protocol_error(payload):
    with pytest.raises(ProtocolError):
        messages.decode(payload)


@pytest.mark.timeout(60)
@settings(max_examples=1000, deadline=None, database=None)
@given(payload=any_payload)
def test_messages_decode_random_payload_raises_only_protocol_error(payload):
    check_decode(payload)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return
    check_decode(text)


@pytest.mark.timeout(60)
@settings(max_examples=1000, deadline=None, database=None)
@given(body=request_like(json_values))
def test_messages_decode_wrong_field_types_raises_only_protocol_error(body):
    check_decode(json.dumps(body))


# (b) End to end: one agent, random frames, each followed by a command.


class Frame:
    """One fuzzed frame and how it goes out: text, binary, or raw text."""

    def __init__(self, payload, how):
        self.payload = payload
        self.how = how

    def __repr__(self):
        return f"Frame({self.payload[:120]!r}... {len(self.payload)} bytes, {self.how})"

    def send(self, session):
        if self.how == "text":
            # Valid UTF-8 goes as a str; the rest as unchecked text bytes.
            try:
                session.send_raw(self.payload.decode("utf-8"))
            except UnicodeDecodeError:
                session.send_raw(self.payload, text=True)
        else:
            session.send_raw(self.payload)


def reply_id(payload):
    """The id a command request with a usable id is answered under, else None.

    Nested deeper than MAX_EXPECTED_DEPTH, a frame may be beyond the agent's
    parser (Python's recursion limit; hypothesis raises the test's own):
    the agent must survive it, but need not answer it.

    Also refuses, by assume(), any frame that would run a command outside
    SAFE_COMMANDS, should a strategy ever build one by chance.
    """
    if payload.count(b"[") + payload.count(b"{") > MAX_EXPECTED_DEPTH:
        return None
    try:
        body = json.loads(payload.decode("utf-8"))
    except (ValueError, RecursionError):
        return None
    if not isinstance(body, dict) or body.get("@type") != "command-request":
        return None
    command = body.get("command")
    assume(not isinstance(command, str) or command in SAFE_COMMANDS)
    request_id = body.get("id")
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        request_id = str(request_id)
    return request_id if isinstance(request_id, str) and request_id else None


safe_requests = request_like(st.sampled_from(SAFE_COMMANDS) | not_text).map(to_bytes)
frames = st.builds(
    Frame,
    st.one_of(
        st.binary(max_size=256),
        st.text(max_size=64).map(str.encode),
        json_values.map(to_bytes),
        safe_requests,
        deep_nesting,
        huge_numbers,
        escaped_ids,
        invalid_utf8,
        st.integers(1, 2 * 1024 * 1024).map(lambda n: b'{"@type":"%s"}' % (b"x" * n)),
    ),
    st.sampled_from(["text", "binary"]),
)


class FuzzedAgent:
    """The agent under fuzz and its session; a new agent if one died.

    A fresh agent after a failure lets hypothesis replay and shrink a
    failing frame against a live agent rather than a dead one.
    """

    def __init__(self, platform, start_agent):
        self.platform = platform
        self.start_agent = start_agent
        self.agent = None
        self.session = None

    def live_session(self):
        healthy = (
            self.agent is not None
            and self.agent.proc.poll() is None
            and not self.session.closed.is_set()
            and len(self.platform.sessions) == self.session.number
        )
        if not healthy:
            self.session = self.restart()
        return self.session

    def restart(self):
        if self.agent is not None:
            self.agent.stop()
        for old in list(self.platform.sessions):
            old.wait_closed(timeout=10)
        self.agent = self.start_agent()
        # Sessions of the old agent may still wait in the queue; all closed.
        while True:
            session = self.platform.wait_session(timeout=20)
            if not session.closed.is_set():
                return session


@pytest.fixture
def fuzzed(platform, start_agent):
    return FuzzedAgent(platform, start_agent)


def answer_counts(session, request_id):
    return len(session.responses.get(request_id, []))


def wait_probe(fuzzed, session, probe, timeout=10.0):
    """The probe's response; fails at once, with the log, if the agent died."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return session.wait_response(probe, timeout=0.5)
        except AssertionError:
            alive = fuzzed.agent.proc.poll() is None and not session.closed.is_set()
            if alive and time.monotonic() < deadline:
                continue
        raise AssertionError(
            f"no answer to {probe}: agent exit status {fuzzed.agent.proc.poll()}, "
            f"session closed {session.closed.is_set()}; agent log tail:\n"
            f"{fuzzed.agent.log[-3000:]}"
        )


@pytest.mark.e2e
@pytest.mark.timeout(240)
@settings(
    max_examples=500,
    deadline=None,
    database=None,
    report_multiple_bugs=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(frame=frames)
@example(frame=Frame(nested(DEEP, b"[", b"]"), "text"))
def test_agent_random_frame_stays_connected_and_answers_next_command(fuzzed, frame):
    session = fuzzed.live_session()
    expected_id = reply_id(frame.payload)
    before = answer_counts(session, expected_id) if expected_id else 0

    frame.send(session)
    probe = f"probe-{uuid.uuid4().hex}"
    session.send_command(f"printf %s {probe}", id=probe)
    response = wait_probe(fuzzed, session, probe)
    if expected_id is not None:
        session.wait_responses(expected_id, before + 1, timeout=10)

    assert (response.output, response.exit_status) == (probe.encode(), 0)
    assert session.responses.get(probe) == [response]
    assert not session.closed.is_set()
    assert len(fuzzed.platform.sessions) == session.number
    if expected_id is not None:
        assert answer_counts(session, expected_id) == before + 1
    assert session.protocol_errors == []


@pytest.mark.e2e
@pytest.mark.timeout(60)
def test_agent_huge_bad_frames_logged_in_short_lines(platform, start_agent):
    # One bad frame is one WARNING, not a copy of the frame in the log: on
    # a login node the log shares a quota with everything else.
    agent = start_agent()
    session = platform.wait_session(timeout=20)
    session.send_raw('{"@type":"' + "t" * 1_000_000 + '"}')
    big_id = "i" * 1_000_000
    session.send_json({"@type": "command-request", "id": big_id, "command": 5})
    session.wait_response(big_id, timeout=20)
    probe = session.send_command("printf ok", id="after-big")
    assert session.wait_response(probe, timeout=20).output == b"ok"

    assert not session.closed.is_set()
    longest = max(agent.lines, key=len)
    assert len(longest) < MAX_LOG_LINE_CHARS, longest[:200]
