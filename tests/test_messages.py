import base64
import json

import pytest

from twagent import messages
from twagent.errors import ProtocolError
from twagent.messages import CommandRequest, CommandResponse, HeartbeatMessage


def test_messages_info_has_protocol_fields():
    text = messages.encode(messages.InfoMessage("u", "/w", "1.0"))
    assert json.loads(text) == {
        "@type": "info",
        "userName": "u",
        "workDir": "/w",
        "agentVersion": "1.0",
    }


def test_messages_response_is_base64_of_raw_bytes():
    raw = bytes(range(256))
    body = json.loads(messages.encode(CommandResponse("x1", raw, 3)))
    assert body["@type"] == "command-response"
    assert base64.b64decode(body["result"]) == raw
    assert body["exitStatus"] == 3
    assert body["id"] == "x1"


def test_messages_heartbeat_round_trip():
    assert messages.decode(messages.encode(HeartbeatMessage())) == HeartbeatMessage()


def test_messages_request_decodes_and_ignores_unknown_fields():
    frame = '{"@type":"command-request","id":"a","command":"ls","extra":1}'
    assert messages.decode(frame) == CommandRequest("a", "ls")
    assert messages.decode(frame.encode()) == CommandRequest("a", "ls")


def test_messages_numeric_id_becomes_text():
    frame = '{"@type":"command-request","id":42,"command":"ls"}'
    assert messages.decode(frame).id == "42"


@pytest.mark.parametrize(
    "frame",
    [
        "nope",
        b"\xff\xfe",
        "[]",
        "3",
        "null",
        "{}",
        '{"@type":null}',
        '{"@type":"other"}',
        '{"@type":"command-request","command":"ls"}',
        '{"@type":"command-request","id":"","command":"ls"}',
        '{"@type":"command-request","id":true,"command":"ls"}',
        '{"@type":"command-request","id":[1],"command":"ls"}',
    ],
)
def test_messages_bad_frames_raise_protocol_error(frame):
    with pytest.raises(ProtocolError):
        messages.decode(frame)


def test_messages_request_without_command_keeps_its_id():
    with pytest.raises(ProtocolError) as caught:
        messages.decode('{"@type":"command-request","id":"k","command":5}')
    assert caught.value.request_id == "k"


def test_messages_deeply_nested_json_is_a_protocol_error():
    with pytest.raises(ProtocolError, match="too deeply"):
        messages.decode("[" * 100_000 + "]" * 100_000)


def test_messages_huge_bad_fields_are_cut_in_the_error():
    with pytest.raises(ProtocolError) as caught:
        messages.decode('{"@type": "' + "x" * 100_000 + '"}')
    assert len(str(caught.value)) < 200
