"""Stress: many large responses and heartbeats while requests pour in.

The main thread alone owns the TLS socket; if two threads ever read and
wrote it at once, frames would tear and this test would see bad JSON,
wrong bytes or a dropped session.
"""

import hashlib

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]


def test_stress_large_responses_heartbeats_and_requests(platform, start_agent):
    agent = start_agent("--pool-size", "8", heartbeat="100ms")
    session = platform.wait_session(timeout=20)
    expected = {}
    for n in range(200):
        size = (n * 7919) % 400_000 + n
        command = f"head -c {size} /dev/urandom | tee /dev/stderr | sha256sum >&2"
        expected[session.send_command(command, id=f"s{n}")] = size
    for request_id, size in expected.items():
        response = session.wait_response(request_id, timeout=120)
        data, digest_line = response.output[:size], response.output[size:]
        assert response.exit_status == 0
        assert digest_line.split()[0].decode() == hashlib.sha256(data).hexdigest()
    assert session.protocol_errors == []
    assert all(len(session.responses[i]) == 1 for i in expected)
    # Heartbeats kept going while the answers went out (100 ms interval; on
    # a loaded 2-core machine far fewer than the ideal count arrive).
    assert session.heartbeats >= 3
    assert len(platform.sessions) == 1
    assert agent.proc.poll() is None
