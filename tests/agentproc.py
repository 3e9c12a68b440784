"""The agent under test, run as a real process, and its log.

By default the installed `tw-agent`; the environment variable
TWAGENT_UNDER_TEST names another command (the binary, the pyz).
A reader thread collects the agent's standard output line by line;
`wait_for()` waits on a Condition, never on a bare sleep.
"""

import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading

TOKEN = "tw-test-token-7f3a9c2e5b"
CONNECTION_ID = "conn-e2e-1"


def agent_command():
    override = os.environ.get("TWAGENT_UNDER_TEST")
    if override:
        return shlex.split(override)
    beside = os.path.join(os.path.dirname(sys.executable), "tw-agent")
    if os.path.exists(beside):
        return [beside]
    found = shutil.which("tw-agent")
    if found:
        return [found]
    return [sys.executable, "-m", "twagent"]


class AgentProcess:
    def __init__(self, args, env, cwd=None, prefix=None):
        self.args = (prefix or agent_command()) + list(args)
        self.lines = []
        self._changed = threading.Condition()
        self.proc = subprocess.Popen(
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=cwd,
        )
        self._reader = threading.Thread(
            target=self._read, name="test-agent-log", daemon=True
        )
        self._reader.start()

    @property
    def pid(self):
        return self.proc.pid

    @property
    def log(self):
        with self._changed:
            return "\n".join(self.lines)

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._changed:
                self.lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern, timeout=20.0):
        """The first log line matching `pattern`; fails after `timeout`."""
        regex = re.compile(pattern)

        def match():
            return next((line for line in self.lines if regex.search(line)), None)

        with self._changed:
            self._changed.wait_for(
                lambda: match() or self.proc.poll() is not None, timeout
            )
            line = match()
        if not line:
            raise AssertionError(
                f"no log line matching {pattern!r} within {timeout}s "
                f"(exit status {self.proc.poll()}); log:\n{self.log}"
            )
        return line

    def count(self, pattern):
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line))

    def signal(self, signum=signal.SIGTERM):
        self.proc.send_signal(signum)

    def wait(self, timeout=30.0):
        status = self.proc.wait(timeout)
        self._reader.join(timeout)
        return status

    def peak_rss_kib(self):
        """VmHWM of the live process, in KiB."""
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise AssertionError("no VmHWM in /proc status")

    def stop(self):
        """End the process whatever state it is in (test clean-up)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        self.proc.stdout.close()


def agent_env(platform, home, heartbeat="2s", extra=None):
    """A minimal environment for the agent: a fresh HOME, the fixture CA."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "USER": pwd.getpwuid(os.getuid()).pw_name,
        "LANG": "C.UTF-8",
        "SSL_CERT_FILE": platform.ca_file,
        "TOWER_ACCESS_TOKEN": TOKEN,
        "TOWER_API_ENDPOINT": platform.url,
        "TOWER_AGENT_HEARTBEAT": heartbeat,
    }
    env.update(extra or {})
    return env
