"""End to end: a link that silently stops carrying bytes is found dead and
replaced, and no response is lost or sent more often than the protocol
allows (issue 3, "Dead links" and "Nothing lost").

The agent reaches the fixture platform through tests.relay.Relay, which
freezes the live TCP connection: no close, no reset, the kernel still
acknowledges, nothing moves. Run with `-s` to see the measured times.
"""

import re
import time
import typing

import pytest

from tests.relay import Relay

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

HEARTBEAT = "2s"
HEARTBEAT_SECONDS = 2.0
# Issue 3: replaced within 3 heartbeat intervals of the freeze.
LIMIT_SECONDS = 3 * HEARTBEAT_SECONDS
DEAD_LINK = r"\d\d:\d\d:\d\d\.\d{3} INFO - no frame from the platform for "
# When, after the agent's last answered heartbeat, each round freezes. A
# freeze right after an answer is the slowest to find: the agent's
# silence clock has just restarted.
FREEZE_PHASES_SECONDS = (0.3, 1.0, 1.7)


class Round(typing.NamedTuple):
    phase: float
    detected: float
    reconnected: float
    log_line: str


@pytest.fixture
def relay(platform):
    with Relay(("127.0.0.1", platform.port)) as relay:
        yield relay


@pytest.fixture
def agent(relay, start_agent):
    return start_agent("-u", relay.url, heartbeat=HEARTBEAT)


def test_deadlink_frozen_link_replaced_within_three_intervals(platform, relay, agent):
    session = platform.wait_session(timeout=20)
    rounds: list[Round] = []
    for phase in FREEZE_PHASES_SECONDS:
        result, session = freeze_and_reconnect(platform, relay, agent, session, phase)
        rounds.append(result)
        print(
            f"freeze {phase:.1f}s after a heartbeat answer: dead link logged "
            f"after {result.detected:.3f}s, new session after "
            f"{result.reconnected:.3f}s (limit {LIMIT_SECONDS:.0f}s)"
        )
    for result in rounds:
        assert result.detected < LIMIT_SECONDS, result
        assert result.reconnected < LIMIT_SECONDS, result
    assert len(platform.sessions) == 1 + len(FREEZE_PHASES_SECONDS)
    assert agent.proc.poll() is None


def test_deadlink_response_finished_during_freeze_arrives_on_next_session(
    platform, relay, agent
):
    first = platform.wait_session(timeout=20)
    first.wait_heartbeats(first.heartbeats + 1)
    first.send_command("sleep 1; echo finished-while-frozen", id="frozen-1")
    agent.wait_for(r"command frozen-1 started")
    relay.freeze()
    agent.wait_for(r"command frozen-1 finished: exit 0")
    second = platform.wait_session(timeout=LIMIT_SECONDS + 5)
    response = second.wait_response("frozen-1", timeout=10)

    # The platform saw nothing of it before the freeze ended.
    assert "frozen-1" not in first.responses
    assert response.output == b"finished-while-frozen\n"
    assert response.exit_status == 0
    assert finished_before_dead_link(agent.log, "frozen-1")

    # Thawed, the old link delivers what it held: a second copy at most.
    relay.thaw()
    first.wait_closed(timeout=15)
    copies = copies_of(platform, "frozen-1")
    print(f"frozen-1 arrived {copies} times: per session {per_session(platform)}")
    assert 1 <= copies <= 2


def test_deadlink_response_answered_before_freeze_not_sent_again(
    platform, relay, agent
):
    first = platform.wait_session(timeout=20)
    first.send_command("echo answered-before", id="answered-1")
    first.wait_response("answered-1")
    # Quiet for a while: the pong that confirms the response got through.
    relay.freeze_when_quiet(0.3)
    second = platform.wait_session(timeout=LIMIT_SECONDS + 5)
    # Anything the agent put back for re-sending goes out before this.
    second.send_command("echo after", id="after-1")
    assert second.wait_response("after-1").output == b"after\n"

    relay.thaw()
    first.wait_closed(timeout=15)
    copies = copies_of(platform, "answered-1")
    print(f"answered-1 arrived {copies} times: per session {per_session(platform)}")
    assert copies <= 2
    # Confirmed by a pong before the freeze, so it is never re-sent.
    assert "answered-1" not in second.responses


# Helpers.


def freeze_and_reconnect(platform, relay, agent, session, phase):
    """Freeze `phase` seconds after a heartbeat answer; time the recovery."""
    session.wait_heartbeats(session.heartbeats + 1)
    next_dead_link = dead_link_after(agent.log)
    frozen_at = relay.freeze_when_quiet(phase)
    frozen_wall = time.time() - (time.monotonic() - frozen_at)
    new_session = platform.wait_session(timeout=LIMIT_SECONDS + 10)
    reconnected = time.monotonic() - frozen_at
    line = agent.wait_for(next_dead_link, timeout=5)
    detected = log_seconds(line) - seconds_of_day(frozen_wall)
    relay.thaw()
    return Round(phase, detected % 86400, reconnected, line), new_session


def dead_link_after(log):
    """A pattern for the next dead-link line, skipping those logged so far."""
    seen = re.findall(r"^(\S+) INFO - no frame from the platform", log, re.MULTILINE)
    skip = "".join(f"(?!{re.escape(stamp)} )" for stamp in seen)
    return "^" + skip + DEAD_LINK


def log_seconds(line):
    """Seconds since local midnight of a log line's HH:MM:SS.mmm stamp."""
    stamp = line.split()[0]
    hours, minutes, seconds = stamp.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


def seconds_of_day(wall):
    local = time.localtime(wall)
    whole = local.tm_hour * 3600 + local.tm_min * 60 + local.tm_sec
    return whole + (wall % 1)


def finished_before_dead_link(log, command_id):
    lines = log.splitlines()
    finished = next(i for i, x in enumerate(lines) if f"{command_id} finished" in x)
    dead = next(i for i, x in enumerate(lines) if "no frame from the platform" in x)
    return finished < dead


def copies_of(platform, command_id):
    return sum(len(s.responses.get(command_id, [])) for s in platform.sessions)


def per_session(platform):
    return {
        s.number: {i: len(r) for i, r in s.responses.items()} for s in platform.sessions
    }
