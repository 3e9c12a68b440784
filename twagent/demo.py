"""`tw-agent --demo`: the agent against a stand-in platform on 127.0.0.1.

The agent runs on the main thread, as in a real start. The stand-in's
server loop runs on `twagent-demo-serve` (and the library's thread per
connection); the scripted session on `twagent-demo-script`, which asks the
agent to stop when it is done. They meet in two queues: `sessions` (the
handler puts each connection that sent its info) and `responses` (the
handler puts each command-response); the script thread takes from both.
Needs the optional `demo` extra (websockets, trustme), imported only here.
"""

import base64
import json
import logging
import os
import queue
import secrets
import shutil
import ssl
import sys
import tempfile
import threading
import time

from . import config as cfg
from . import logs
from .errors import ConfigError

log = logging.getLogger(__name__)

CONNECTION_ID = "tw-agent-demo"
HEARTBEAT_SECONDS = 5.0
CONNECT_WAIT_SECONDS = 30.0
COMMAND_WAIT_SECONDS = 60.0
JOB_WAIT_SECONDS = 120.0
PROXY_VARIABLES = ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")
COMMANDS = (
    'echo "hello from $(hostname) as $(id -un)"',
    "pwd",
    "uname -srm",
    "printf 'a line on stderr\\n' >&2; exit 3",
)


def run(args, environ):
    """Serve one scripted session to an agent in this process; 0 if it
    answered every command."""
    websockets_server, trustme = _import_extra()
    logging.getLogger("websockets").setLevel(logging.WARNING)
    work_dir, scratch = _work_dir(args)
    ca = trustme.CA()
    token = "demo-" + secrets.token_hex(16)
    logs.add_secret(token)
    platform = DemoPlatform(websockets_server, ca, token)
    try:
        with tempfile.NamedTemporaryFile("wb", suffix=".pem") as ca_file:
            ca_file.write(ca.cert_pem.bytes())
            ca_file.flush()
            platform.start()
            return _run_agent(platform, token, work_dir, ca_file.name, environ)
    finally:
        platform.stop()
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)


def _import_extra():
    try:
        import trustme
        from websockets.sync import server as websockets_server
    except ImportError as exc:
        raise ConfigError(
            f"--demo needs the optional demo extra ({exc.name or exc}): "
            "pip install 'twagent[demo]'"
        ) from exc
    return websockets_server, trustme


def _work_dir(args):
    """The work directory: -w, else ~/work, else a scratch one removed after."""
    if args.work_dir:
        return cfg.resolve_work_dir(args.work_dir), None
    home_work = os.path.join(os.path.expanduser("~"), "work")
    if os.path.isdir(home_work):
        return home_work, None
    scratch = tempfile.mkdtemp(prefix="tw-agent-demo-")
    return scratch, scratch


def _run_agent(platform, token, work_dir, ca_file, environ):
    from .agent import Agent

    user_name, _ = cfg.resolve_user_name(environ)
    # The stand-in is on loopback: no proxy may stand in between.
    agent_environ = {k: v for k, v in environ.items() if k not in PROXY_VARIABLES}
    config = cfg.Config(
        connection_id=CONNECTION_ID,
        token=token,
        url=f"https://127.0.0.1:{platform.port}",
        work_dir=work_dir,
        user_name=user_name,
        heartbeat_seconds=HEARTBEAT_SECONDS,
        ca_file=ca_file,
    )
    agent = Agent(config, agent_environ)
    script = DemoScript(platform, agent, environ, sys.stdout)
    say(sys.stdout, f"stand-in platform on {config.url}; work dir {work_dir}")
    script.start()
    try:
        status = agent.run()
    finally:
        script.stop()
    say(sys.stdout, script.summary())
    return status if script.failures == 0 else 1


def say(out, text):
    print(logs.redact("demo: " + text), file=out)
    out.flush()


class DemoPlatform:
    """A tiny platform: the REST checks and the agent WebSocket."""

    def __init__(self, websockets_server, ca, token):
        self._lib = websockets_server
        self._ca = ca
        self._token = token
        self.sessions = queue.Queue()
        self.responses = queue.Queue()
        self.port = None
        self._server = None
        self._thread = None

    def start(self):
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._ca.issue_cert("127.0.0.1").configure_cert(context)
        self._server = self._lib.serve(
            self._handle,
            "127.0.0.1",
            0,
            ssl=context,
            process_request=self._http,
            compression=None,
            max_size=16 * 1024 * 1024,
        )
        self.port = self._server.socket.getsockname()[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="twagent-demo-serve"
        )
        self._thread.start()

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._thread.join()
            self._server = None

    def _http(self, connection, request):
        path = request.path.split("?", 1)[0]
        if request.headers.get("Authorization") != "Bearer " + self._token:
            return _reply(connection, 401, {"message": "Unauthorized"})
        if path == "/service-info":
            info = {"version": "demo", "apiVersion": "1.8", "heartbeatInterval": 45}
            return _reply(connection, 200, {"serviceInfo": info})
        if path == "/user":
            return _reply(connection, 200, {"user": {"userName": "demo"}})
        if path == f"/agent/{CONNECTION_ID}/connect":
            return None  # the library upgrades to a WebSocket
        return _reply(connection, 404, {"message": "Not Found"})

    def _handle(self, connection):
        """On the library's connection thread: record and answer frames."""
        for frame in connection:
            message = json.loads(frame)
            kind = message.get("@type")
            if kind == "info":
                self.sessions.put((connection, message))
            elif kind == "heartbeat":
                connection.send(json.dumps({"@type": "heartbeat"}))
            elif kind == "command-response":
                self.responses.put(message)


def _reply(connection, status, body):
    response = connection.respond(status, json.dumps(body))
    response.headers["Content-Type"] = "application/json"
    return response


class DemoScript:
    """The `twagent-demo-script` thread: a few commands, then a stop."""

    def __init__(self, platform, agent, environ, out):
        self._platform = platform
        self._agent = agent
        self._path = environ.get("PATH")
        self._out = out
        self._stopped = threading.Event()
        self._thread = threading.Thread(
            target=self.run, name="twagent-demo-script", daemon=True
        )
        self._sent = 0
        self.answered = 0
        self.failures = 0

    def start(self):
        self._thread.start()

    def stop(self):
        self._stopped.set()
        self._thread.join()

    def run(self):
        try:
            self._play()
        except Exception:
            log.exception("the demo script failed")
            self.failures += 1
        finally:
            if not self._stopped.is_set():
                say(self._out, "script done; stopping the agent")
                self._agent.request_stop()

    def summary(self):
        if self.failures:
            return f"{self.answered} commands answered, {self.failures} failed"
        return f"{self.answered} commands answered; all went as expected"

    def _play(self):
        try:
            connection, info = self._platform.sessions.get(timeout=CONNECT_WAIT_SECONDS)
        except queue.Empty:
            say(self._out, f"the agent did not connect in {CONNECT_WAIT_SECONDS:.0f}s")
            self.failures += 1
            return
        say(
            self._out,
            f"agent connected and sent info: user {info.get('userName')}, "
            f"work dir {info.get('workDir')}, version {info.get('agentVersion')}",
        )
        for command in COMMANDS:
            if self._stopped.is_set() or self._command(connection, command) is None:
                return
        if shutil.which("sbatch", path=self._path):
            self._slurm(connection)
        else:
            say(self._out, "sbatch is not on PATH, so no Slurm job in this demo")

    def _command(self, connection, command, show=True):
        """Send one command-request; (output, exit status), None if unanswered."""
        self._sent += 1
        request_id = f"demo-{self._sent}"
        request = {"@type": "command-request", "id": request_id, "command": command}
        started = time.monotonic()
        connection.send(json.dumps(request))
        response = self._wait(request_id)
        if response is None:
            say(self._out, f"no answer to {command!r} in {COMMAND_WAIT_SECONDS:.0f}s")
            self.failures += 1
            return None
        self.answered += 1
        output = base64.b64decode(response.get("result", ""))
        status = response.get("exitStatus")
        if show:
            self._show(command, output, status, time.monotonic() - started)
        return output, status

    def _show(self, command, output, status, seconds):
        say(self._out, f"platform -> agent: {command}")
        for line in output.decode("utf-8", "replace").splitlines():
            print("        | " + line, file=self._out)
        say(self._out, f"agent -> platform: exit status {status} in {seconds:.2f}s")

    def _wait(self, request_id):
        deadline = time.monotonic() + COMMAND_WAIT_SECONDS
        while not self._stopped.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            try:
                message = self._platform.responses.get(timeout=min(0.5, left))
            except queue.Empty:
                continue
            if message.get("id") == request_id:
                return message
        return None

    def _slurm(self, connection):
        submit = (
            "sbatch --parsable --job-name tw-agent-demo "
            "--output tw-agent-demo-%j.out --wrap 'hostname; date'"
        )
        result = self._command(connection, submit)
        if result is None or result[1] != 0:
            return
        job = result[0].decode("ascii", "replace").strip().split(";")[0]
        deadline = time.monotonic() + JOB_WAIT_SECONDS
        while time.monotonic() < deadline and not self._stopped.is_set():
            result = self._command(connection, f"squeue -h -j {job} -o %T", False)
            state = result[0].decode("ascii", "replace").strip() if result else ""
            if result is None or result[1] != 0 or not state:
                break
            say(self._out, f"job {job} is {state}")
            self._stopped.wait(1.0)
        self._command(connection, f"cat tw-agent-demo-{job}.out")
