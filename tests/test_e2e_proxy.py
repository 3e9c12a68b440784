"""End to end through a real HTTP proxy: Debian's tinyproxy on 127.0.0.1,
the fixture platform on 127.0.0.2 (a `localhost` target would prove
little: websocket-client versions treat it differently with a proxy)."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.agentproc import CONNECTION_ID, TOKEN, AgentProcess, agent_env
from tests.clirun import home_of, run_cli
from tests.platform import make_platform_fixture
from tests.tinyproxy import Tinyproxy

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

ROOT = Path(__file__).resolve().parent.parent
PROXY_USER, PROXY_PASSWORD = "proxyuser", "Pr0xyPassw0rd"
TRACE = {"LOGGER_LEVELS_IO_SEQERA_TOWER_AGENT": "TRACE"}

platform = make_platform_fixture(
    token=TOKEN, connection_id=CONNECTION_ID, host="127.0.0.2"
)


@pytest.fixture
def tinyproxy(platform, tmp_path):
    proxy = Tinyproxy(tmp_path, platform.port)
    yield proxy
    proxy.stop()


@pytest.fixture
def auth_proxy(platform, tmp_path):
    directory = tmp_path / "auth-proxy"
    directory.mkdir()
    proxy = Tinyproxy(directory, platform.port, (PROXY_USER, PROXY_PASSWORD))
    yield proxy
    proxy.stop()


def target(platform):
    return f"127.0.0.2:{platform.port}"


def echo_through(platform, agent):
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("echo via")
    assert session.wait_response(request_id, timeout=20).output == b"via\n"
    agent.signal()
    assert agent.wait(20) == 0


@pytest.mark.parametrize("variable", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
def test_proxy_rest_and_websocket_go_through_connect(
    platform, start_agent, tinyproxy, variable
):
    agent = start_agent(env={variable: tinyproxy.url})
    echo_through(platform, agent)
    # service-info, user, and the WebSocket: three tunnels.
    assert len(tinyproxy.connects(target(platform))) == 3, tinyproxy.log()


@pytest.mark.parametrize(
    "no_proxy", ["127.0.0.2", "*", ".0.0.2", "127.0.0.2:{port}", "other.org,127.0.0.2"]
)
def test_proxy_no_proxy_goes_direct(platform, start_agent, tinyproxy, no_proxy):
    env = {
        "HTTPS_PROXY": tinyproxy.url,
        "NO_PROXY": no_proxy.format(port=platform.port),
    }
    agent = start_agent(env=env)
    echo_through(platform, agent)
    assert tinyproxy.connects() == []


def test_proxy_no_proxy_for_another_port_still_proxies(
    platform, start_agent, tinyproxy
):
    env = {"https_proxy": tinyproxy.url, "no_proxy": "127.0.0.2:1"}
    agent = start_agent(env=env)
    echo_through(platform, agent)
    assert len(tinyproxy.connects(target(platform))) == 3


def test_proxy_credentials_work_and_stay_out_of_the_log(
    platform, start_agent, auth_proxy
):
    url = f"http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{auth_proxy.port}"
    agent = start_agent(env={"HTTPS_PROXY": url, **TRACE})
    echo_through(platform, agent)
    assert len(auth_proxy.connects(target(platform))) == 3
    assert "connecting through proxy 127.0.0.1:" in agent.log
    assert PROXY_PASSWORD not in agent.log


def test_proxy_missing_credentials_407_is_exit_2(platform, start_agent, auth_proxy):
    agent = start_agent(env={"HTTPS_PROXY": auth_proxy.url})
    assert agent.wait(20) == 2
    assert "407" in agent.log and "http://user:password@host:port" in agent.log
    assert not platform.http_requests


def test_proxy_socks_is_refused_with_exit_2(platform, start_agent):
    agent = start_agent(env={"ALL_PROXY": "socks5://127.0.0.1:1080"})
    assert agent.wait(20) == 2
    assert "SOCKS" in agent.log


def test_proxy_check_reports_the_proxy_and_passes(
    platform, tmp_path, tinyproxy, work_dir
):
    status, output = run_cli(
        platform,
        tmp_path,
        "--check",
        CONNECTION_ID,
        "-w",
        str(work_dir),
        env={"HTTPS_PROXY": tinyproxy.url},
    )
    assert status == 0, output
    assert (
        f"HTTP CONNECT through 127.0.0.1:{tinyproxy.port} (from HTTPS_PROXY)" in output
    )
    assert tinyproxy.connects(target(platform))


@pytest.fixture(scope="session")
def websocket_client_131(tmp_path_factory):
    """websocket-client 1.3.1 unpacked, for PYTHONPATH."""
    directory = tmp_path_factory.mktemp("wsc131")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps"]
        + ["websocket-client==1.3.1", "-d", str(directory)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
    )
    wheels = list(directory.glob("websocket_client-1.3.1-*.whl"))
    if not wheels:
        pytest.skip("cannot download websocket-client 1.3.1: " + result.stdout.decode())
    unpacked = directory / "site"
    with zipfile.ZipFile(wheels[0]) as wheel:
        wheel.extractall(unpacked)
    return unpacked


@pytest.mark.parametrize("no_proxy", [None, "127.0.0.2"], ids=["proxied", "direct"])
def test_proxy_same_with_websocket_client_131(
    platform, tmp_path, work_dir, tinyproxy, websocket_client_131, no_proxy
):
    env = agent_env(platform, home_of(tmp_path), "2s", {"HTTPS_PROXY": tinyproxy.url})
    if no_proxy:
        env["NO_PROXY"] = no_proxy
    env["PYTHONPATH"] = f"{websocket_client_131}:{ROOT}"
    version = subprocess.run(
        [sys.executable, "-c", "import websocket; print(websocket.__version__)"],
        env=env,
        stdout=subprocess.PIPE,
        check=True,
    )
    assert version.stdout.decode().strip() == "1.3.1"
    prefix = [sys.executable, "-m", "twagent"]
    agent = AgentProcess([CONNECTION_ID, "-w", str(work_dir)], env, prefix=prefix)
    try:
        echo_through(platform, agent)
    finally:
        agent.stop()
    expected = 0 if no_proxy else 3
    assert len(tinyproxy.connects(target(platform))) == expected
