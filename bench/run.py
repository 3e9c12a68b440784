"""Performance of the agent against the floor, the null agent and OpenSSH.

    python bench/run.py [--requests 500] [--idle-seconds 60] [--no-ssh]

All figures come from one run, so machine drift hits them alike; the last
line gives the issue's goals as ratios against the floor of the same run.
"""

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin import CONNECTION_ID, TOKEN, StandIn

HERE = Path(__file__).resolve().parent
BIG_BYTES = 10 * 1000 * 1000


def spawn_true(cwd):
    proc = subprocess.Popen(
        ["sh", "-c", "true"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=cwd,
        close_fds=True,
        start_new_session=True,
    )
    while proc.stdout.read(65536):
        pass
    proc.stdout.close()
    proc.wait()


def floor(count, cwd):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        spawn_true(cwd)
        times.append(time.perf_counter() - start)
    with ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: spawn_true(cwd), range(4 * count)))
        rate = 4 * count / (time.perf_counter() - start)
    return percentiles(times), rate


def percentiles(times):
    ordered = sorted(times)
    return ordered[len(ordered) // 2], ordered[
        min(len(ordered) - 1, int(len(ordered) * 0.99))
    ]


def round_trips(session, command, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        session.request(command)
        session.response()
        times.append(time.perf_counter() - start)
    return times


def in_flight(session, count):
    start = time.perf_counter()
    for _ in range(count):
        session.request("true")
    for _ in range(count):
        session.response()
    return count / (time.perf_counter() - start)


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wakeups(pid):
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/status") as f:
            for line in f:
                if line.startswith(
                    ("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")
                ):
                    total += int(line.split()[1])
    return total


class Run:
    """One agent (or null agent) process against a fresh stand-in."""

    def __init__(self, command, workdir, script, extra_env=None):
        self.standin = StandIn(workdir, script)
        env = dict(
            os.environ, TOWER_ACCESS_TOKEN=TOKEN, SSL_CERT_FILE=self.standin.ca_file
        )
        env.update(extra_env or {})
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            command(self.standin),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )

    def finish(self, timeout=600):
        if not self.standin.done.wait(timeout):
            raise RuntimeError("benchmark script did not finish")
        self.proc.terminate()
        self.proc.wait(30)
        self.standin.close()
        if self.standin.error:
            raise self.standin.error
        return self.standin.result


def agent_command(workdir):
    base = shlex.split(os.environ.get("TWAGENT_UNDER_TEST", "")) or [
        shutil.which("tw-agent") or sys.executable,
        *([] if shutil.which("tw-agent") else ["-m", "twagent"]),
    ]
    return lambda s: base + [CONNECTION_ID, "-u", s.url, "-w", workdir]


def null_command(s):
    return [
        sys.executable,
        str(HERE / "null_agent.py"),
        s.url,
        CONNECTION_ID,
        TOKEN,
        s.ca_file,
    ]


def measure_transport(command, workdir, count):
    def script(session):
        round_trips(session, "true", 20)
        times = round_trips(session, "true", count)
        return percentiles(times), in_flight(session, 1000)

    return Run(command, workdir, script).finish()


def measure_agent(command, workdir, count, idle_seconds):
    box = {}

    def script(session):
        box["info_at"] = time.perf_counter()
        round_trips(session, "true", 20)
        box["rtt"] = percentiles(round_trips(session, "true", count))
        box["rate"] = in_flight(session, 1000)
        big = round_trips(session, f"head -c {BIG_BYTES} /dev/zero", 5)
        box["big"] = statistics.median(big)
        pid = run.proc.pid
        box["peak_kib"] = proc_status(pid, "VmHWM")
        cpu0, wake0, t0 = cpu_seconds(pid), wakeups(pid), time.perf_counter()
        threading.Event().wait(idle_seconds)
        elapsed = time.perf_counter() - t0
        box["idle_cpu"] = (cpu_seconds(pid) - cpu0) / elapsed * 100
        box["idle_wakeups"] = (wakeups(pid) - wake0) / elapsed
        box["idle_rss_kib"] = proc_status(pid, "VmRSS")
        return box

    run = Run(command, workdir, script)
    run.finish()
    box["start"] = box["info_at"] - run.started
    return box


def start_times(command, workdir, rounds=5):
    times = []
    for _ in range(rounds):
        box = {}

        def script(session, box=box):
            box["at"] = time.perf_counter()

        run = Run(command, workdir, script)
        run.finish()
        times.append(box["at"] - run.started)
    return statistics.median(times)


def ssh_figures(workdir, count=30):
    """`ssh 127.0.0.1 true`: fresh connections, then multiplexed."""
    sshd = shutil.which("sshd") or "/usr/sbin/sshd"
    if not os.path.exists(sshd) or os.geteuid() != 0:
        return None
    d = Path(tempfile.mkdtemp(dir=workdir))
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "host"], check=True
    )
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", d / "user"], check=True
    )
    (d / "authorized_keys").write_text((d / "user.pub").read_text())
    with socket_port() as port:
        pass
    (d / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host\nAuthorizedKeysFile {d}/authorized_keys\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nStrictModes no\nUsePAM no\n"
        f"PidFile {d}/sshd.pid\n"
    )
    os.makedirs("/run/sshd", exist_ok=True)
    daemon = subprocess.Popen(
        [sshd, "-D", "-e", "-f", d / "sshd_config"], stderr=subprocess.DEVNULL
    )
    base = [
        "ssh",
        "-q",
        "-i",
        str(d / "user"),
        "-p",
        str(port),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        f"UserKnownHostsFile={d}/known",
        "-o",
        "BatchMode=yes",
    ]
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(base + ["127.0.0.1", "true"], check=False).returncode != 0:
            if time.monotonic() > deadline:
                return None
            threading.Event().wait(0.1)
        fresh = timed(
            lambda: subprocess.run(base + ["127.0.0.1", "true"], check=True), count
        )
        mux = base + [
            "-o",
            f"ControlPath={d}/mux",
            "-o",
            "ControlMaster=auto",
            "-o",
            "ControlPersist=60",
        ]
        subprocess.run(mux + ["127.0.0.1", "true"], check=True)
        multiplexed = timed(
            lambda: subprocess.run(mux + ["127.0.0.1", "true"], check=True), count
        )
        subprocess.run(
            mux + ["-O", "exit", "127.0.0.1"], check=False, stderr=subprocess.DEVNULL
        )
        return fresh, multiplexed
    finally:
        daemon.terminate()
        daemon.wait(10)


class socket_port:
    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc):
        self.sock.close()


def timed(func, count):
    times = []
    for _ in range(count):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--no-ssh", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="twagent-bench-")
    agent = agent_command(workdir)

    (floor_p50, floor_p99), floor_rate = floor(args.requests, workdir)
    (null_p50, null_p99), null_rate = measure_transport(
        null_command, workdir, args.requests
    )
    a = measure_agent(agent, workdir, args.requests, args.idle_seconds)
    start = start_times(agent, workdir)
    ssh = None if args.no_ssh else ssh_figures(workdir)
    agent_p50, agent_p99 = a["rtt"]
    own = agent_p50 - null_p50

    rows = [
        (
            "floor: spawn sh -c true, p50 / p99",
            f"{floor_p50 * 1e3:.2f} / {floor_p99 * 1e3:.2f} ms",
        ),
        ("floor: 8 threads, spawns per second", f"{floor_rate:.0f}/s"),
        (
            "null agent: round trip p50 / p99",
            f"{null_p50 * 1e3:.2f} / {null_p99 * 1e3:.2f} ms",
        ),
        ("null agent: 1000 in flight", f"{null_rate:.0f}/s"),
        (
            "agent: round trip of true, p50 / p99",
            f"{agent_p50 * 1e3:.2f} / {agent_p99 * 1e3:.2f} ms",
        ),
        ("agent: own cost per command (p50 - null p50)", f"{own * 1e3:.2f} ms"),
        ("agent: 1000 in flight", f"{a['rate']:.0f}/s"),
        ("agent: 10 MB output round trip (median of 5)", f"{a['big'] * 1e3:.0f} ms"),
        ("agent: peak RSS", f"{a['peak_kib'] / 1024:.1f} MiB"),
        (
            f"agent: idle CPU over {args.idle_seconds:.0f} s after the big output",
            f"{a['idle_cpu']:.3f} %",
        ),
        ("agent: idle RSS at the end", f"{a['idle_rss_kib'] / 1024:.1f} MiB"),
        (
            "agent: idle wake-ups (context switches) per second",
            f"{a['idle_wakeups']:.2f}/s",
        ),
        ("agent: process start to info (median of 5)", f"{start * 1e3:.0f} ms"),
    ]
    if ssh:
        rows += [
            ("OpenSSH: ssh 127.0.0.1 true, fresh", f"{ssh[0] * 1e3:.1f} ms"),
            ("OpenSSH: multiplexed (ControlMaster)", f"{ssh[1] * 1e3:.1f} ms"),
        ]
    width = max(len(r[0]) for r in rows)
    print(
        f"twagent bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, python {sys.version.split()[0]}"
    )
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    print(
        f"ratios: own cost/floor p50 {own / floor_p50:.2f} (goal <= 1.25); "
        f"throughput/floor 8-thread {a['rate'] / floor_rate:.2f} (goal >= 0.9); "
        f"10MB {a['big']:.3f}s (<= 0.25); peak {a['peak_kib'] / 1024:.0f} MiB (<= 80); "
        f"idle {a['idle_cpu']:.3f}% CPU (<= 0.05), {a['idle_rss_kib'] / 1024:.0f} MiB (<= 30); "
        f"start {start:.3f}s (<= 0.3)"
        + (
            f"; agent p50/ssh fresh {agent_p50 / ssh[0]:.2f}, /ssh mux {agent_p50 / ssh[1]:.2f}"
            if ssh
            else ""
        )
    )
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
