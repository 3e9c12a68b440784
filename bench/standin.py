"""A lean platform stand-in for benchmarks: TLS on 127.0.0.1, REST checks,
and one WebSocket session whose measuring loop runs in the connection's own
thread (the websockets sync server gives each connection one), so nothing
but the agent and the socket sits between a request and its response.
"""

import base64
import json
import ssl
import threading
from pathlib import Path

import trustme
from websockets.sync.server import serve

TOKEN = "bench-token-0123456789"
CONNECTION_ID = "bench"


class StandIn:
    def __init__(self, directory, script):
        """`script(session)` runs in the connection thread once info came."""
        self.script = script
        self.result = None
        self.error = None
        self.done = threading.Event()
        ca = trustme.CA()
        self.ca_file = str(Path(directory) / "ca.pem")
        ca.cert_pem.write_to_path(self.ca_file)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(context)
        self._server = serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=context,
            process_request=self._rest,
            max_size=32 * 1024 * 1024,
            ping_interval=None,
            compression=None,
        )
        self.port = self._server.socket.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _rest(self, connection, request):
        if request.path.endswith("/connect"):
            return None
        body = (
            {"serviceInfo": {"apiVersion": "1.8"}}
            if "service-info" in request.path
            else {"user": {}}
        )
        response = connection.respond(200, json.dumps(body))
        response.headers["Content-Type"] = "application/json"
        return response

    def _handle(self, ws):
        session = Session(ws)
        try:
            session.info = json.loads(ws.recv())
            self.result = self.script(session)
        except Exception as exc:  # noqa: BLE001 - reported to the bench
            self.error = exc
        finally:
            self.done.set()
            ws.close()

    def close(self):
        self._server.shutdown()
        self._thread.join(10)


class Session:
    def __init__(self, ws):
        self.ws = ws
        self.info = None
        self._seq = 0

    def request(self, command):
        self._seq += 1
        request_id = f"b{self._seq}"
        self.ws.send(
            json.dumps(
                {"@type": "command-request", "id": request_id, "command": command}
            )
        )
        return request_id

    def response(self):
        """The next command-response; heartbeats are answered on the way."""
        while True:
            message = json.loads(self.ws.recv())
            if message.get("@type") == "heartbeat":
                self.ws.send('{"@type":"heartbeat"}')
                continue
            if message.get("@type") == "command-response":
                return (
                    message["id"],
                    base64.b64decode(message["result"]),
                    message["exitStatus"],
                )
