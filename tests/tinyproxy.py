"""Debian's tinyproxy, started by a test on 127.0.0.1 and stopped after.

`Tinyproxy.connects()` reads its log for the CONNECT requests it served.
tinyproxy takes no port 0, so a free port is found by binding first.
"""

import re
import shutil
import socket
import subprocess
import threading
import time

import pytest

READY_SECONDS = 10.0


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Tinyproxy:
    def __init__(self, directory, connect_port, basic_auth=None):
        binary = shutil.which("tinyproxy") or "/usr/bin/tinyproxy"
        if not shutil.which(binary):
            pytest.skip("tinyproxy is not installed: apt-get install -y tinyproxy")
        self.port = free_port()
        self.log_file = directory / "tinyproxy.log"
        self.config = directory / "tinyproxy.conf"
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Timeout 60",
            f'LogFile "{self.log_file}"',
            "LogLevel Info",
            "MaxClients 20",
            "Allow 127.0.0.1",
            f"ConnectPort {connect_port}",
        ]
        if basic_auth:
            user, password = basic_auth
            lines.append(f"BasicAuth {user} {password}")
        self.config.write_text("\n".join(lines) + "\n")
        self.proc = subprocess.Popen(
            [binary, "-d", "-c", str(self.config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_ready()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def _wait_ready(self):
        deadline = time.monotonic() + READY_SECONDS
        pause = threading.Event()
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tinyproxy exited:\n{self.log()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), 1).close()
                return
            except OSError:
                pause.wait(0.05)
        self.stop()
        raise AssertionError(f"tinyproxy not listening after {READY_SECONDS}s")

    def log(self):
        try:
            return self.log_file.read_text()
        except FileNotFoundError:
            return ""

    def connects(self, target=None):
        """The CONNECT targets tinyproxy logged, in order."""
        found = re.findall(r"CONNECT (\S+) HTTP/1\.\d", self.log())
        return [t for t in found if target is None or t == target]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
