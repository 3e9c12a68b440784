"""The agent's dispatch, without a platform: requests straight to on_request."""

import pytest

from twagent.agent import Agent
from twagent.config import Config
from twagent.messages import CommandRequest

pytestmark = pytest.mark.timeout(30)


class SnapshotAtOnce:
    """A status writer whose thread takes its snapshot the moment it is
    asked: the worst timing the real one can have."""

    def __init__(self, agent):
        self.agent = agent
        self.snapshots = []

    def changed(self):
        self.snapshots.append(self.agent.status_snapshot()["running"])


def test_agent_status_change_comes_after_the_command_is_running(tmp_path):
    config = Config("c1", "tok-0123456789", "https://127.0.0.1:9", str(tmp_path), "me")
    agent = Agent(config, {"PATH": "/usr/bin:/bin"})
    writer = agent.status_writer = SnapshotAtOnce(agent)
    try:
        agent.on_request(CommandRequest("cmd-1", "sleep 0.2"))
        assert writer.snapshots[0] == ["cmd-1"]
    finally:
        agent.executor.shutdown()
        agent.outbox.close()
    assert writer.snapshots[-1] == []
