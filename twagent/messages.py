"""The platform's message types and their JSON form.

Pure functions and records; safe from any thread.
"""

import base64
import json
import typing

from .errors import ProtocolError


class InfoMessage(typing.NamedTuple):
    user_name: str
    work_dir: str
    agent_version: str


class HeartbeatMessage(typing.NamedTuple):
    pass


class CommandRequest(typing.NamedTuple):
    id: str
    command: str


class CommandResponse(typing.NamedTuple):
    id: str
    output: bytes
    exit_status: int


def encode(message):
    """The JSON text of one outgoing message."""
    if isinstance(message, CommandResponse):
        result = base64.b64encode(message.output).decode("ascii")
        body = {
            "@type": "command-response",
            "id": message.id,
            "result": result,
            "exitStatus": message.exit_status,
        }
    elif isinstance(message, HeartbeatMessage):
        body = {"@type": "heartbeat"}
    elif isinstance(message, InfoMessage):
        body = {
            "@type": "info",
            "userName": message.user_name,
            "workDir": message.work_dir,
            "agentVersion": message.agent_version,
        }
    else:
        raise TypeError(f"not a message: {message!r}")
    return json.dumps(body, separators=(",", ":"))


def decode(payload):
    """One incoming frame's payload as a message record.

    Raises ProtocolError for anything that is not a message we know; the
    caller warns and skips it.
    """
    try:
        if isinstance(payload, bytes):
            payload = payload.decode("utf-8")
        body = json.loads(payload)
    except RecursionError as exc:
        raise ProtocolError("frame nests JSON too deeply to read") from exc
    except Exception as exc:
        # Untrusted bytes: a parser that fails in its own way must not end
        # the session (PyPy 7.3 raises SystemError on some control
        # characters, even when its own error message is turned to text).
        raise ProtocolError(f"frame is not JSON text: {_reason(exc)}") from exc
    if not isinstance(body, dict):
        raise ProtocolError("frame is JSON but not an object")
    kind = body.get("@type")
    if kind == "heartbeat":
        return HeartbeatMessage()
    if kind == "command-request":
        return _command_request(body)
    raise ProtocolError(f"unknown message type {_cut(repr(kind))}")


def _command_request(body):
    request_id = body.get("id")
    command = body.get("command")
    if isinstance(request_id, int) and not isinstance(request_id, bool):
        request_id = str(request_id)
    if not isinstance(request_id, str) or not request_id:
        raise ProtocolError("command-request without a usable id")
    if not isinstance(command, str):
        raise ProtocolError(
            f"command-request {_cut(request_id)} has no command text", request_id
        )
    return CommandRequest(request_id, command)


def _cut(text, limit=80):
    """A value from the network, short enough for one log line."""
    return text if len(text) <= limit else text[:limit] + f"... ({len(text)} chars)"


def _reason(exc):
    """What went wrong, without any of the frame's own text: PyPy 7.3 can
    build a broken string from a bad frame, which then fails in any use."""
    position = getattr(exc, "pos", None)
    where = f" at char {position}" if isinstance(position, int) else ""
    return type(exc).__name__ + where
