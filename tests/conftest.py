"""Shared fixtures: the fixture platform, the agent process, leak checks."""

import threading

import psutil
import pytest

from tests.agentproc import CONNECTION_ID, TOKEN, AgentProcess, agent_env
from tests.platform import FakePlatform


def pytest_configure(config):
    config.addinivalue_line("markers", "slurm: drives a real Slurm cluster")
    config.addinivalue_line("markers", "slow: long-running (soak, churn)")
    config.addinivalue_line("markers", "e2e: runs the agent as a process")


@pytest.fixture(autouse=True)
def no_leaks():
    """Fail a test that leaves threads or child processes behind."""
    threads_before = set(threading.enumerate())
    yield
    me = psutil.Process()
    children = [c for c in me.children(recursive=True) if _alive(c)]
    for child in children:
        child.kill()
    leaked = [
        t
        for t in threading.enumerate()
        if t not in threads_before and t.is_alive() and not _finishing(t)
    ]
    assert not children, f"test left child processes: {children}"
    assert not leaked, f"test left threads: {leaked}"


def _alive(proc):
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _finishing(thread):
    thread.join(2.0)
    return not thread.is_alive()


@pytest.fixture
def platform(tmp_path):
    with FakePlatform(tmp_path, token=TOKEN, connection_id=CONNECTION_ID) as p:
        yield p


@pytest.fixture
def work_dir(tmp_path):
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def start_agent(platform, tmp_path, work_dir):
    """Start the agent against the platform; every process is ended after."""
    started = []

    def start(*args, heartbeat="2s", env=None, connection_id=CONNECTION_ID, cwd=None):
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        full_env = agent_env(platform, home, heartbeat, env)
        argv = [connection_id, "-w", str(work_dir), *args]
        agent = AgentProcess(argv, full_env, cwd=cwd)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        agent.stop()
