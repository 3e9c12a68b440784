"""Writing masked WebSocket frames from parts, piece by piece.

A 10 MiB answer is 14 MiB of base64. Built whole, then masked and framed
by the library, it would be copied four or five times; streamed here, the
agent holds one piece of it at a time. Small frames going out together
(a burst of answers and the ping that confirms them) share one write, so
one TLS record and one system call carry them all. Main thread only (it
writes the socket).
"""

import base64
import json
import os
import struct

PIECE_BYTES = 3 * (1 << 18)  # a multiple of 3, so base64 pieces join cleanly
MASK_BLOCK_BYTES = 4 * (1 << 18)
SEND_BYTES = 1 << 20
OPCODE_TEXT = 0x1
OPCODE_PING = 0x9


class Payload:
    """A frame payload: its length, and its bytes as a series of pieces."""

    def __init__(self, length, pieces):
        self.length = length
        self.pieces = pieces

    @classmethod
    def of(cls, data):
        return cls(len(data), [data])


def response_payload(request_id, output, exit_status):
    """The JSON of a command-response, with the base64 made lazily."""
    head = '{"@type":"command-response","id":' + json.dumps(request_id)
    head += ',"result":"'
    tail = '","exitStatus":' + str(int(exit_status)) + "}"
    head, tail = head.encode("utf-8"), tail.encode("ascii")
    encoded_length = 4 * ((len(output) + 2) // 3)
    length = len(head) + encoded_length + len(tail)
    return Payload(length, _chain(head, _base64_pieces(output), tail))


def _chain(head, middle, tail):
    yield head
    yield from middle
    yield tail


def _base64_pieces(data):
    view = memoryview(data)
    for start in range(0, len(view), PIECE_BYTES):
        yield base64.b64encode(view[start : start + PIECE_BYTES])


def frame_header(length, mask_key, opcode=OPCODE_TEXT):
    first = 0x80 | opcode
    if length < 126:
        return struct.pack("!BB", first, 0x80 | length) + mask_key
    if length < 1 << 16:
        return struct.pack("!BBH", first, 0x80 | 126, length) + mask_key
    return struct.pack("!BBQ", first, 0x80 | 127, length) + mask_key


class Masker:
    """XORs a stream with a 4-byte key, keeping the key's phase across calls.

    The key block is sized to the frame (at most MASK_BLOCK_BYTES), so a
    heartbeat does not pay for a megabyte of key.
    """

    def __init__(self, mask_key, length=MASK_BLOCK_BYTES):
        size = min(length, MASK_BLOCK_BYTES)
        self._block = mask_key * (size // 4 + 2)
        self._offset = 0

    def mask(self, piece):
        view = memoryview(piece)
        out = []
        for start in range(0, len(view), MASK_BLOCK_BYTES):
            chunk = view[start : start + MASK_BLOCK_BYTES]
            phase = self._offset % 4
            key = self._block[phase : phase + len(chunk)]
            value = int.from_bytes(chunk, "little") ^ int.from_bytes(key, "little")
            out.append(value.to_bytes(len(chunk), "little"))
            self._offset += len(chunk)
        return out[0] if len(out) == 1 else b"".join(out)


def write_frame(sock, payload, mask_key=None):
    """Send `payload` as one text frame; raises what the socket raises."""
    write_frames(sock, [(OPCODE_TEXT, payload)], mask_key)


def write_frames(sock, frames, mask_key=None):
    """Send (opcode, payload) frames in order, in as few writes as fit."""
    buffer = bytearray()
    for opcode, payload in frames:
        buffer = put_frame(sock, buffer, opcode, payload, mask_key)
    if buffer:
        sock.sendall(buffer)


def put_frame(sock, buffer, opcode, payload, mask_key=None):
    """Add one frame to `buffer`, writing the buffer out whenever it holds
    SEND_BYTES; returns what is left to write."""
    mask_key = mask_key or os.urandom(4)
    masker = Masker(mask_key, payload.length)
    buffer += frame_header(payload.length, mask_key, opcode)
    sent = 0
    for piece in payload.pieces:
        sent += len(piece)
        if sent > payload.length:
            break
        buffer += masker.mask(piece)
        if len(buffer) >= SEND_BYTES:
            sock.sendall(buffer)
            buffer = bytearray()
    if sent != payload.length:
        # The header promised another length: the frame cannot be finished.
        raise ValueError(f"frame payload was {sent} bytes, not {payload.length}")
    return buffer
