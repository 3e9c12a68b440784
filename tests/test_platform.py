"""Tests of the fake platform itself, driven by websocket-client and
http.client as a stand-in agent; everything runs on the test thread."""

import base64
import http.client
import json
import ssl
import threading

import pytest
import trustme
import websocket

from tests.platform import MAX_FRAME_BYTES, FakePlatform, make_platform_fixture

TOKEN = "s3cret-token"
CONNECTION_ID = "conn-42"

platform = make_platform_fixture(token=TOKEN, connection_id=CONNECTION_ID)


@pytest.fixture(autouse=True)
def no_leaked_threads():
    # Every test must leave the thread list as it found it.
    before = set(threading.enumerate())
    yield
    leaked = set(threading.enumerate()) - before
    assert not leaked, f"threads left behind: {leaked}"


def get(platform, path, token=TOKEN, method="GET"):
    context = ssl.create_default_context(cafile=platform.ca_file)
    client = http.client.HTTPSConnection(
        platform.host, platform.port, context=context, timeout=10
    )
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        client.request(method, path, headers=headers)
        answer = client.getresponse()
        return answer.status, dict(answer.getheaders()), answer.read()
    finally:
        client.close()


def connect(platform, token=TOKEN, url=None):
    return websocket.create_connection(
        url or platform.ws_url,
        timeout=10,
        sslopt={"ca_certs": platform.ca_file},
        header=[f"Authorization: Bearer {token}"],
    )


def send_info(ws):
    info = {"@type": "info", "userName": "u", "workDir": "/w", "agentVersion": "0"}
    ws.send(json.dumps(info))
    return info


def connect_session(platform):
    ws = connect(platform)
    send_info(ws)
    return ws, platform.wait_session()


def response_frame(command_id, output, exit_status=0):
    result = base64.b64encode(output).decode()
    message = {"@type": "command-response", "id": command_id}
    return json.dumps(message | {"result": result, "exitStatus": exit_status})


# REST endpoints


@pytest.mark.timeout(30)
def test_service_info_get_answers_json_with_date(platform):
    status, headers, body = get(platform, "/service-info")

    assert status == 200
    assert headers["Content-Type"] == "application/json"
    assert "Date" in headers
    info = json.loads(body)["serviceInfo"]
    assert info["apiVersion"] == "1.8"
    assert info["heartbeatInterval"] == 45
    assert {"version", "commitId"} <= set(info)


@pytest.mark.timeout(30)
def test_service_info_no_api_version_omits_field(tmp_path):
    with FakePlatform(tmp_path, api_version=None) as fake:
        status, _, body = get(fake, "/service-info")

    assert status == 200
    assert "apiVersion" not in json.loads(body)["serviceInfo"]


@pytest.mark.timeout(30)
def test_service_info_api_prefix_served_only_under_prefix(tmp_path):
    with FakePlatform(tmp_path, api_prefix="/api") as fake:
        assert fake.url == f"https://127.0.0.1:{fake.port}/api"
        assert get(fake, "/api/service-info")[0] == 200
        assert get(fake, "/service-info")[0] == 404


@pytest.mark.timeout(30)
def test_user_good_token_answers_user_name(platform):
    status, headers, body = get(platform, "/user")

    assert status == 200
    assert "Date" in headers
    assert json.loads(body) == {"user": {"userName": platform.user_name}}


@pytest.mark.timeout(30)
def test_user_bad_or_missing_token_answers_401(platform):
    assert get(platform, "/user", token="wrong")[0] == 401
    assert get(platform, "/user", token=None)[0] == 401


@pytest.mark.timeout(30)
def test_http_unknown_path_or_method_answers_404_or_405(platform):
    assert get(platform, "/nothing-here")[0] == 404
    assert get(platform, "/service-info", method="POST")[0] == 405


@pytest.mark.timeout(30)
def test_script_status_two_503_then_normal(platform):
    platform.script_status("/service-info", [503, 503])
    platform.script_status("/user", [401])

    statuses = [get(platform, "/service-info")[0] for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert [get(platform, "/user")[0] for _ in range(2)] == [401, 200]


@pytest.mark.timeout(30)
def test_http_requests_recorded_with_lowercase_headers(platform):
    get(platform, "/service-info?x=1")

    method, path, headers = platform.http_requests[-1]
    assert (method, path) == ("GET", "/service-info?x=1")
    assert headers["authorization"] == f"Bearer {TOKEN}"


# TLS


@pytest.mark.timeout(30)
def test_tls_other_ca_refused(platform, tmp_path):
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    context = ssl.create_default_context(cafile=str(other))
    client = http.client.HTTPSConnection(platform.host, platform.port, context=context)

    with pytest.raises(ssl.SSLCertVerificationError):
        client.request("GET", "/service-info")
    client.close()


@pytest.mark.timeout(30)
def test_tls_second_loopback_address_matches_cert(tmp_path):
    with FakePlatform(tmp_path, host="127.0.0.2") as fake:
        assert fake.url.startswith("https://127.0.0.2:")
        assert get(fake, "/service-info")[0] == 200


# WebSocket upgrade


@pytest.mark.timeout(30)
def test_connect_bad_token_refused_401(platform):
    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(platform, token="wrong")

    assert caught.value.status_code == 401
    assert platform.sessions == []


@pytest.mark.timeout(30)
def test_connect_revoked_token_refused_401(platform):
    ws, _ = connect_session(platform)
    ws.close()
    platform.token = "rotated"

    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(platform)
    assert caught.value.status_code == 401


@pytest.mark.timeout(30)
def test_connect_other_connection_id_refused_404(platform):
    url = platform.ws_url.replace(CONNECTION_ID, "someone-else")

    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(platform, url=url)
    assert caught.value.status_code == 404


@pytest.mark.timeout(30)
def test_connect_scripted_status_refused(platform):
    platform.script_status(f"/agent/{CONNECTION_ID}/connect", [503])

    with pytest.raises(websocket.WebSocketBadStatusException) as caught:
        connect(platform)
    assert caught.value.status_code == 503


# Sessions


@pytest.mark.timeout(30)
def test_wait_session_records_info_and_headers(platform):
    ws = connect(platform)
    info = send_info(ws)

    session = platform.wait_session()
    assert session.info == info
    assert session.number == 1
    assert session.headers["authorization"] == f"Bearer {TOKEN}"
    assert platform.sessions == [session]
    ws.close()


@pytest.mark.timeout(30)
def test_wait_session_no_new_session_raises_assertion(platform):
    ws, _ = connect_session(platform)

    with pytest.raises(AssertionError, match="no new agent session"):
        platform.wait_session(timeout=0.2)
    ws.close()


@pytest.mark.timeout(30)
def test_heartbeat_answered_with_one_heartbeat(platform):
    ws, session = connect_session(platform)

    ws.send(json.dumps({"@type": "heartbeat"}))
    assert json.loads(ws.recv()) == {"@type": "heartbeat"}
    assert session.wait_heartbeats(1) == 1
    ws.close()


@pytest.mark.timeout(30)
def test_heartbeat_answers_off_sends_nothing(platform):
    ws, session = connect_session(platform)
    session.answer_heartbeats = False

    ws.send(json.dumps({"@type": "heartbeat"}))
    session.wait_heartbeats(1)
    # Had the heartbeat been answered, that answer would come first.
    session.send_command("true", id="after")
    assert json.loads(ws.recv())["id"] == "after"
    ws.close()


@pytest.mark.timeout(30)
def test_client_ping_answered_with_pong(platform):
    ws, _ = connect_session(platform)

    ws.ping("are-you-there")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_PONG
    assert frame.data == b"are-you-there"
    ws.close()


@pytest.mark.timeout(30)
def test_command_round_trip_binary_output_decoded(platform):
    ws, session = connect_session(platform)
    output = b"line\r\n\x00nul \xff\xfe not utf-8\n"

    command_id = session.send_command("printf stuff")
    request = json.loads(ws.recv())
    assert request == {
        "@type": "command-request",
        "id": command_id,
        "command": "printf stuff",
    }
    ws.send(response_frame(command_id, output, exit_status=3))

    response = session.wait_response(command_id)
    assert (response.id, response.exit_status, response.output) == (
        command_id,
        3,
        output,
    )
    assert response.raw["@type"] == "command-response"
    assert session.responses[command_id] == [response]
    ws.close()


@pytest.mark.timeout(30)
def test_command_response_twice_listed_twice(platform):
    ws, session = connect_session(platform)

    ws.send(response_frame("dup", b"x"))
    ws.send(response_frame("dup", b"x"))
    ws.send(json.dumps({"@type": "heartbeat"}))
    ws.recv()  # frames are handled in order, so both responses are in
    assert len(session.responses["dup"]) == 2
    ws.close()


@pytest.mark.timeout(30)
def test_platform_wait_response_finds_later_session(platform):
    first_ws, first = connect_session(platform)
    command_id = first.send_command("sleep 1")
    first_ws.close()

    second_ws, second = connect_session(platform)
    second_ws.send(response_frame(command_id, b"done\n"))
    assert platform.wait_response(command_id).output == b"done\n"
    assert second.number == 2
    second_ws.close()


@pytest.mark.timeout(30)
def test_wait_response_timeout_raises_assertion(platform):
    ws, session = connect_session(platform)

    with pytest.raises(AssertionError, match="no command-response"):
        session.wait_response("never", timeout=0.2)
    ws.close()


@pytest.mark.timeout(30)
def test_malformed_client_frames_recorded_as_protocol_errors(platform):
    ws = connect(platform)
    ws.send("{not json")
    ws.send_binary(b"\x00\x01")
    info = send_info(ws)

    session = platform.wait_session()
    assert session.info == info
    assert session.raw_frames[:2] == ["{not json", b"\x00\x01"]
    assert len(session.protocol_errors) == 2
    ws.close()


@pytest.mark.timeout(30)
def test_send_raw_text_and_binary_delivered_as_given(platform):
    ws, session = connect_session(platform)

    session.send_raw("not json at all")
    session.send_raw(b"\x00\xff")
    session.send_json({"@type": "mystery"})
    assert ws.recv_data() == (websocket.ABNF.OPCODE_TEXT, b"not json at all")
    assert ws.recv_data() == (websocket.ABNF.OPCODE_BINARY, b"\x00\xff")
    assert json.loads(ws.recv()) == {"@type": "mystery"}
    ws.close()


@pytest.mark.timeout(30)
def test_large_frame_12mb_accepted(platform):
    ws, session = connect_session(platform)
    output = bytes(range(256)) * (9 * 1024 * 1024 // 256)
    frame = response_frame("big", output)
    assert 12 * 1024 * 1024 <= len(frame) < MAX_FRAME_BYTES

    ws.send(frame)
    assert session.wait_response("big").output == output
    ws.close()


# Ending sessions


@pytest.mark.timeout(30)
def test_close_4001_client_reads_code(platform):
    ws, session = connect_session(platform)

    session.close(4001, "re-authenticate")
    opcode, frame = ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4001
    assert frame.data[2:] == b"re-authenticate"
    ws.shutdown()  # the server waits for the client to drop TCP
    # websocket-client answers any Close with 1000.
    assert session.wait_closed() == 1000


@pytest.mark.timeout(30)
def test_client_close_code_recorded(platform):
    ws, session = connect_session(platform)

    ws.close(status=4321, reason=b"bye")
    assert session.wait_closed() == 4321
    assert session.close_reason == "bye"


@pytest.mark.timeout(30)
def test_reject_next_with_4000_closes_only_that_session(platform):
    platform.reject_next_with(4000, reason="already connected")

    rejected_ws, rejected = connect_session(platform)
    opcode, frame = rejected_ws.recv_data_frame(control_frame=True)
    assert opcode == websocket.ABNF.OPCODE_CLOSE
    assert int.from_bytes(frame.data[:2], "big") == 4000
    rejected_ws.shutdown()
    rejected.wait_closed()

    ws, session = connect_session(platform)
    ws.send(json.dumps({"@type": "heartbeat"}))
    assert json.loads(ws.recv()) == {"@type": "heartbeat"}
    assert not session.closed.is_set()
    ws.close()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("reset", [False, True])
def test_abort_client_sees_drop_without_close_frame(platform, reset):
    ws, session = connect_session(platform)

    session.abort(reset=reset)
    with pytest.raises((websocket.WebSocketConnectionClosedException, OSError)):
        ws.recv_data_frame(control_frame=True)
    assert session.wait_closed() is None
    ws.close()


@pytest.mark.timeout(30)
def test_stop_open_session_closed_and_no_thread_left(tmp_path):
    before = set(threading.enumerate())
    # The client below cannot answer the Close while stop() blocks this
    # thread, so a short close timeout keeps the test quick.
    fake = FakePlatform(tmp_path, token=TOKEN, close_timeout=0.5).start()
    get(fake, "/service-info")
    ws, session = connect_session(fake)
    idle = connect(fake)  # upgraded but never sends info

    fake.stop()
    assert set(threading.enumerate()) == before
    assert session.closed.is_set()
    _, frame = ws.recv_data_frame(control_frame=True)
    assert int.from_bytes(frame.data[:2], "big") == 1001
    ws.shutdown()  # after a Close, websocket-client's close() does nothing
    idle.close()
