"""Performance of the agent against the floor, the null agent and OpenSSH.

    python bench/run.py [--rounds 5] [--requests 500] [--idle-seconds 60] [--no-ssh]

The load figures are taken in rounds. A round starts a null agent and a
fresh agent side by side, then takes samples in turn: one spawn of the
floor, one round trip through the null agent, one through the agent, and
so on for --requests each; then 1000 spawns on 8 threads, 1000 requests in
flight to each, three times over. Drift on the machine (it is shared and
noisy) so hits all three alike. The table shows medians over the rounds,
then each round's ratios; the last line gives the goals as the medians of
those ratios. The big output, idle and start-up figures come from one
more agent process after the rounds.
"""

import argparse
import os
import queue
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


def timed_spawn(cwd):
    start = time.perf_counter()
    spawn_true(cwd)
    return time.perf_counter() - start


def timed_spawns(cwd, count):
    """Seconds for `count` spawns spread over 8 threads."""
    with ThreadPoolExecutor(8) as pool:
        start = time.perf_counter()
        list(pool.map(lambda _: spawn_true(cwd), range(count)))
        return time.perf_counter() - start


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


def round_trip(session):
    start = time.perf_counter()
    session.request("true")
    session.response()
    return time.perf_counter() - start


def in_flight(session, count):
    """Seconds until `count` requests sent at once are all answered."""
    start = time.perf_counter()
    for _ in range(count):
        session.request("true")
    for _ in range(count):
        session.response()
    return time.perf_counter() - start


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
        # Its own folder for the CA file: two runs may be up at once.
        self.standin = StandIn(tempfile.mkdtemp(dir=workdir), script)
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


class Driven:
    """A connected process whose session runs the bench's jobs, one by one.

    `call(job)` runs `job(session)` in the stand-in's connection thread and
    returns its result, so samples of several processes can be interleaved.
    """

    def __init__(self, command, workdir):
        self._jobs = queue.Queue()
        self._results = queue.Queue()
        self._run = Run(command, workdir, self._serve)

    def _serve(self, session):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                self._results.put((True, job(session)))
            except Exception as exc:  # noqa: BLE001 - handed to call()
                self._results.put((False, exc))
                return

    def call(self, job, timeout=600):
        self._jobs.put(job)
        ok, value = self._results.get(timeout=timeout)
        if not ok:
            raise value
        return value

    def finish(self):
        self._jobs.put(None)
        self._run.finish()

    def cpu(self):
        """CPU seconds of the process and the children it has waited for."""
        with open(f"/proc/{self._run.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        ticks = sum(int(field) for field in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")


def bench_cpu():
    """CPU seconds of this process (the stand-ins) and its waited children."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def measure_round(agent, workdir, count, batches=3):
    """One round of the floor, the null agent and the agent, interleaved:
    a sample of each in turn, so that drift on the machine hits all three
    alike."""
    null, tested = Driven(null_command, workdir), Driven(agent, workdir)
    for driven in (null, tested):
        driven.call(lambda session: round_trips(session, "true", 20))
    floor_t, null_t, agent_t = [], [], []
    for _ in range(count):
        floor_t.append(timed_spawn(workdir))
        null_t.append(null.call(round_trip))
        agent_t.append(tested.call(round_trip))
    seconds, cpu = [0.0] * 3, [0.0] * 5
    for _ in range(batches):
        before = (bench_cpu(), null.cpu(), tested.cpu())
        seconds[0] += timed_spawns(workdir, 1000)
        cpu[0] += bench_cpu() - before[0]
        before = (bench_cpu(), null.cpu(), tested.cpu())
        seconds[1] += null.call(lambda session: in_flight(session, 1000))
        cpu[1] += null.cpu() - before[1]
        cpu[2] += bench_cpu() - before[0]
        before = (bench_cpu(), null.cpu(), tested.cpu())
        seconds[2] += tested.call(lambda session: in_flight(session, 1000))
        cpu[3] += tested.cpu() - before[2]
        cpu[4] += bench_cpu() - before[0]
    null.finish()
    tested.finish()
    figures = round_figures(
        percentiles(floor_t),
        percentiles(null_t),
        percentiles(agent_t),
        [1000 * batches / s for s in seconds],
    )
    names = ("floor_cpu", "null_cpu", "null_standin_cpu", "agent_cpu", "standin_cpu")
    figures.update((name, c / (1000 * batches)) for name, c in zip(names, cpu))
    return figures


def round_figures(floor_p, null_p, agent_p, rates):
    own = agent_p[0] - null_p[0]
    return {
        "floor_p50": floor_p[0],
        "floor_p99": floor_p[1],
        "floor_rate": rates[0],
        "null_p50": null_p[0],
        "null_p99": null_p[1],
        "null_rate": rates[1],
        "agent_p50": agent_p[0],
        "agent_p99": agent_p[1],
        "agent_rate": rates[2],
        "own": own,
        "own_ratio": own / floor_p[0],
        "rate_ratio": rates[2] / rates[0],
    }


def measure_agent(command, workdir, idle_seconds):
    """The big output, peak and idle figures of one agent process."""
    box = {}

    def script(session):
        box["info_at"] = time.perf_counter()
        round_trips(session, "true", 20)
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
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--no-ssh", action="store_true")
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="twagent-bench-")
    agent = agent_command(workdir)

    rounds = [measure_round(agent, workdir, args.requests) for _ in range(args.rounds)]
    a = measure_agent(agent, workdir, args.idle_seconds)
    start = start_times(agent, workdir)
    ssh = None if args.no_ssh else ssh_figures(workdir)
    print_table(args, rounds, a, start, ssh)
    shutil.rmtree(workdir, ignore_errors=True)


def median_of(rounds, key):
    return statistics.median(r[key] for r in rounds)


def print_table(args, rounds, a, start, ssh):
    m = {key: median_of(rounds, key) for key in rounds[0]}
    ms = {key: f"{value * 1e3:.2f}" for key, value in m.items()}
    rows = [
        (
            "floor: spawn sh -c true, p50 / p99",
            f"{ms['floor_p50']} / {ms['floor_p99']} ms",
        ),
        ("floor: 8 threads, spawns per second", f"{m['floor_rate']:.0f}/s"),
        ("null agent: round trip p50 / p99", f"{ms['null_p50']} / {ms['null_p99']} ms"),
        ("null agent: 1000 in flight", f"{m['null_rate']:.0f}/s"),
        (
            "agent: round trip of true, p50 / p99",
            f"{ms['agent_p50']} / {ms['agent_p99']} ms",
        ),
        ("agent: own cost per command (p50 - null p50)", f"{ms['own']} ms"),
        ("agent: 1000 in flight", f"{m['agent_rate']:.0f}/s"),
        (
            "CPU per command in flight: floor (parent + sh)",
            f"{m['floor_cpu'] * 1e6:.0f} us",
        ),
        (
            "  null agent / its stand-in",
            f"{m['null_cpu'] * 1e6:.0f} / {m['null_standin_cpu'] * 1e6:.0f} us",
        ),
        (
            "  agent (with its sh children) / its stand-in",
            f"{m['agent_cpu'] * 1e6:.0f} / {m['standin_cpu'] * 1e6:.0f} us",
        ),
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
        f"twagent bench, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"python {sys.version.split()[0]}, load figures: medians of {len(rounds)} rounds"
    )
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    for i, r in enumerate(rounds, 1):
        print(
            f"round {i}: own cost/floor p50 {r['own_ratio']:.2f} "
            f"({r['own'] * 1e3:.2f} / {r['floor_p50'] * 1e3:.2f} ms); "
            f"throughput/floor 8-thread {r['rate_ratio']:.2f} "
            f"({r['agent_rate']:.0f} / {r['floor_rate']:.0f} per s)"
        )
    print(
        f"ratios: own cost/floor p50 {m['own_ratio']:.2f} (goal <= 1.25); "
        f"throughput/floor 8-thread {m['rate_ratio']:.2f} (goal >= 0.9); "
        f"10MB {a['big']:.3f}s (<= 0.25); peak {a['peak_kib'] / 1024:.0f} MiB (<= 80); "
        f"idle {a['idle_cpu']:.3f}% CPU (<= 0.05), {a['idle_rss_kib'] / 1024:.0f} MiB (<= 30); "
        f"start {start:.3f}s (<= 0.3)"
        + (
            f"; agent p50/ssh fresh {m['agent_p50'] / ssh[0]:.3f}, /ssh mux {m['agent_p50'] / ssh[1]:.3f}"
            if ssh
            else ""
        )
    )


if __name__ == "__main__":
    main()
