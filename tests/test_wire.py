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


def split_frames(data):
    """(opcode, unmasked payload) of each masked frame in `data`."""
    frames = []
    while data:
        assert data[0] & 0x80 and data[1] & 0x80  # final, masked
        opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
        if length == 126:
            (length,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif length == 127:
            (length,) = struct.unpack("!Q", data[2:10])
            offset = 10
        key = data[offset : offset + 4]
        body = data[offset + 4 : offset + 4 + length]
        frames.append((opcode, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[offset + 4 + length :]
    return frames


def parse_frame(data):
    """The unmasked payload of the one text frame in `data`."""
    ((opcode, payload),) = split_frames(data)
    assert opcode == 1
    return payload


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


def test_wire_small_frames_share_one_write():
    sock = Recorder()
    answers = [wire.response_payload(f"id-{n}", b"out", n) for n in range(3)]
    ping = (wire.OPCODE_PING, wire.Payload.of(b"3"))
    wire.write_frames(sock, [(wire.OPCODE_TEXT, a) for a in answers] + [ping])
    assert len(sock.writes) == 1
    frames = split_frames(sock.writes[0])
    assert [opcode for opcode, _ in frames] == [1, 1, 1, 9]
    assert [json.loads(body)["exitStatus"] for _, body in frames[:3]] == [0, 1, 2]
    assert frames[3][1] == b"3"


def test_wire_big_frame_among_small_ones_keeps_order_and_bytes():
    sock = Recorder()
    output = os.urandom(3 * 1024 * 1024)
    frames = [
        (wire.OPCODE_TEXT, wire.response_payload("before", b"a", 0)),
        (wire.OPCODE_TEXT, wire.response_payload("big", output, 0)),
        (wire.OPCODE_PING, wire.Payload.of(b"7")),
    ]
    wire.write_frames(sock, frames)
    assert max(len(w) for w in sock.writes) < 2 * wire.SEND_BYTES
    parsed = split_frames(b"".join(sock.writes))
    assert [json.loads(body)["id"] for _, body in parsed[:2]] == ["before", "big"]
    assert base64.b64decode(json.loads(parsed[1][1])["result"]) == output
    assert parsed[2] == (9, b"7")
