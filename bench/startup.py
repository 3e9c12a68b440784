"""Start-up to `--version` of the shipped forms, in interleaved rounds.

    python bench/startup.py [--rounds 21] NAME=COMMAND...

Each round runs every variant once, in order, so drift on the machine hits
them alike. A COMMAND containing {cold} gets a new empty folder each run
(an empty unpack cache), {warm} one folder kept for all runs of that
variant. Prints per variant the median and minimum wall time, the median
peak RSS (GNU time's: the larger of a onefile bootstrap and its child), and
the ratio of the median to the floor: an interpreter that does nothing,
measured in the same rounds.
"""

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time

FLOOR = f"{shlex.quote(sys.executable)} -I -S -c pass"


def run_once(command, rss_file):
    """(seconds, peak RSS in MiB) of one run; fails on a non-zero exit.

    GNU time takes the RSS: a child forked from this Python would count
    this process's own pages, copied before exec, in its peak.
    """
    argv = ["/usr/bin/time", "-f", "%M", "-o", rss_file, *shlex.split(command)]
    started = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, check=False)
    elapsed = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{command!r} exited {result.returncode}")
    with open(rss_file) as f:
        return elapsed, int(f.read().split()[-1]) / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("variants", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args()
    variants = [("floor", FLOOR)] + [v.split("=", 1) for v in args.variants]
    scratch = tempfile.mkdtemp(prefix="twagent-bench-")
    times = {name: [] for name, _ in variants}
    rss = {name: [] for name, _ in variants}
    for number in range(args.rounds):
        for name, command in variants:
            cold = os.path.join(scratch, f"{name}-cold-{number}")
            warm = os.path.join(scratch, f"{name}-warm")
            rss_file = os.path.join(scratch, "rss")
            seconds, mib = run_once(command.format(cold=cold, warm=warm), rss_file)
            times[name].append(seconds)
            rss[name].append(mib)
    floor = statistics.median(times["floor"])
    print(f"{args.rounds} interleaved rounds; floor = `{FLOOR}`")
    print(f"{'variant':<24} {'median':>8} {'min':>8} {'RSS MiB':>8} {'x floor':>8}")
    for name, _ in variants:
        median = statistics.median(times[name])
        print(
            f"{name:<24} {median:8.3f} {min(times[name]):8.3f} "
            f"{statistics.median(rss[name]):8.1f} {median / floor:8.2f}"
        )
    subprocess.run(["rm", "-rf", scratch], check=True)


if __name__ == "__main__":
    main()
