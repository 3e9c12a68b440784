"""Run the agent with one fault injected, for the no-half-dead-agent tests.

Usage: python faulty_agent.py MODE AGENT-ARGS...; MODE is `send` (the third
frame write raises), `heartbeat` (the first tick raises) or `worker` (the
command `boom` raises inside its pool worker).
"""

import sys

from twagent import cli, executor, outbox, wire


def fail_third_send():
    original = wire.put_frame
    calls = []

    def put_frame(sock, buffer, opcode, payload, mask_key=None):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("injected send failure")
        return original(sock, buffer, opcode, payload, mask_key)

    wire.put_frame = put_frame


def fail_first_tick():
    original = outbox.Outbox.request_heartbeat
    calls = []

    def request_heartbeat(self):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("injected heartbeat failure")
        return original(self)

    outbox.Outbox.request_heartbeat = request_heartbeat


def fail_boom_command():
    original = executor.Executor.run

    def run(self, request):
        if request.command == "boom":
            raise RuntimeError("injected worker failure")
        return original(self, request)

    executor.Executor.run = run


FAULTS = {
    "send": fail_third_send,
    "heartbeat": fail_first_tick,
    "worker": fail_boom_command,
}

if __name__ == "__main__":
    FAULTS[sys.argv[1]]()
    sys.exit(cli.main(sys.argv[2:]))
