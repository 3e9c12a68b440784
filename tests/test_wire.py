import base64
import json
import os
import struct

import pytest

from twagent import wire


class Recorder:
    def __init__(self):
        self.writes = []

    def sendall(self, data):
        self.writes.append(bytes(data))


def parse_frame(data):
    first, second = data[0], data[1]
    assert first == 0x81
    assert second & 0x80
    length, offset = second & 0x7F, 2
    if length == 126:
        (length,) = struct.unpack("!H", data[2:4])
        offset = 4
    elif length == 127:
        (length,) = struct.unpack("!Q", data[2:10])
        offset = 10
    key = data[offset : offset + 4]
    payload = data[offset + 4 :]
    assert len(payload) == length
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 125, 126, 65535, 65536, 70001])
def test_wire_response_frame_unmasks_to_json(size):
    output = os.urandom(size)
    sock = Recorder()
    wire.write_frame(sock, wire.response_payload("id-1", output, 5))
    body = json.loads(parse_frame(b"".join(sock.writes)))
    assert base64.b64decode(body["result"]) == output
    assert body["exitStatus"] == 5
    assert body["id"] == "id-1"


def test_wire_small_frame_is_one_write():
    sock = Recorder()
    wire.write_frame(sock, wire.Payload.of(b'{"@type":"heartbeat"}'))
    assert len(sock.writes) == 1


def test_wire_big_frame_is_written_in_pieces():
    sock = Recorder()
    output = b"z" * (5 * 1024 * 1024)
    payload = wire.response_payload("big", output, 0)
    wire.write_frame(sock, payload, mask_key=b"\x01\x02\x03\x04")
    assert len(sock.writes) > 3
    assert max(len(w) for w in sock.writes) < 3 * 1024 * 1024
    body = json.loads(parse_frame(b"".join(sock.writes)))
    assert base64.b64decode(body["result"]) == output


def test_wire_masker_keeps_phase_across_odd_pieces():
    key = b"\x10\x20\x30\x40"
    data = os.urandom(1001)
    masker = wire.Masker(key)
    masked = masker.mask(data[:3]) + masker.mask(data[3:10]) + masker.mask(data[10:])
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))


def test_wire_id_is_json_escaped():
    sock = Recorder()
    wire.write_frame(sock, wire.response_payload('a"b\\c', b"", 0))
    assert json.loads(parse_frame(b"".join(sock.writes)))["id"] == 'a"b\\c'


def test_wire_wrong_length_raises():
    with pytest.raises(ValueError, match="not 5"):
        wire.write_frame(Recorder(), wire.Payload(5, [b"abc"]))
