"""End to end: --ca-file adds a private CA while SSL_CERT_FILE points
elsewhere; a TLS failure names the host and points at --ca-file."""

import pytest
import trustme

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]


@pytest.fixture
def other_ca_file(tmp_path):
    """A valid bundle that does not hold the platform's CA."""
    path = tmp_path / "other-ca.pem"
    path.write_bytes(trustme.CA().cert_pem.bytes())
    return str(path)


def test_ca_file_trusted_while_ssl_cert_file_points_elsewhere(
    platform, start_agent, other_ca_file
):
    agent = start_agent(
        "--ca-file", platform.ca_file, env={"SSL_CERT_FILE": other_ca_file}
    )
    session = platform.wait_session(timeout=20)
    request_id = session.send_command("echo trusted")
    assert session.wait_response(request_id, timeout=20).output == b"trusted\n"
    agent.signal()
    assert agent.wait(20) == 0


def test_ca_file_absent_tls_failure_names_host_and_flag_exit_2(
    platform, start_agent, other_ca_file
):
    agent = start_agent(env={"SSL_CERT_FILE": other_ca_file})
    assert agent.wait(30) == 2
    line = agent.wait_for("ERROR")
    assert f"127.0.0.1:{platform.port}" in line
    assert "could not be verified" in line
    assert "--ca-file" in line
    assert not platform.sessions


def test_ca_file_ssl_cert_file_alone_still_works(platform, start_agent):
    # agent_env() sets SSL_CERT_FILE to the platform's CA.
    agent = start_agent()
    platform.wait_session(timeout=20)
    agent.signal()
    assert agent.wait(20) == 0


def test_ca_file_unreadable_is_a_config_error(platform, start_agent, tmp_path):
    bad = tmp_path / "not-a-ca.pem"
    bad.write_text("not a certificate\n")
    agent = start_agent("--ca-file", str(bad))
    assert agent.wait(20) == 2
    assert "cannot load CA file" in agent.log
