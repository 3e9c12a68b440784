"""The null agent: connects like the agent, answers every request at once
with empty output and status 0, runs nothing. What it costs is the harness
and TLS, to be subtracted from the agent's round trip."""

import json
import os
import ssl
import sys

import websocket


def main(url, connection_id, token, ca_file):
    ws = websocket.create_connection(
        url.replace("https://", "wss://") + f"/agent/{connection_id}/connect",
        header=[f"Authorization: Bearer {token}"],
        sslopt={"ca_certs": ca_file, "cert_reqs": ssl.CERT_REQUIRED},
    )
    ws.send(
        json.dumps(
            {
                "@type": "info",
                "userName": "bench",
                "workDir": os.getcwd(),
                "agentVersion": "null",
            }
        )
    )
    while True:
        try:
            message = json.loads(ws.recv())
        except (websocket.WebSocketException, OSError, ValueError):
            return
        if message.get("@type") == "command-request":
            ws.send(
                json.dumps(
                    {
                        "@type": "command-response",
                        "id": message["id"],
                        "result": "",
                        "exitStatus": 0,
                    }
                )
            )


if __name__ == "__main__":
    main(*sys.argv[1:5])
