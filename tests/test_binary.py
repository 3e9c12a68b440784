"""Tests of the built dist/tw-agent (packaging/build-binary.sh, tox -e binary).

The binary is a Nuitka onefile: a bootstrap that unpacks the program into a
per-process folder under $XDG_CACHE_HOME (else ~/.cache)/tw-agent, runs it,
and removes the folder. These tests check that layout, concurrent cold
starts, the glibc floor of what it unpacks, and CA discovery with the
build's own default paths hidden. The end-to-end tests run against the
binary through TWAGENT_UNDER_TEST (tox.ini).
"""

import concurrent.futures
import fcntl
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
BINARY = pathlib.Path(os.environ.get("TWAGENT_BINARY", str(ROOT / "dist" / "tw-agent")))
FLOOR_CHECK = ROOT / "packaging" / "glibc_floor.py"
GLIBC_TARGET = os.environ.get("TWAGENT_GLIBC_TARGET", "2.28")
ROUNDS = 5
CONCURRENT = 20

pytestmark = [
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        not BINARY.is_file(), reason=f"{BINARY} is not built: run `tox -e binary`"
    ),
]
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("unshare"),
    reason="needs root and unshare for a private mount namespace",
)


def run(args, env=None, timeout=60):
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    full_env.update(env or {})
    return subprocess.run(
        [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
        timeout=timeout,
        env=full_env,
    )


def unpack_folders(cache):
    return sorted((cache / "tw-agent").glob("run-*"))


@pytest.fixture
def binary_under_test(monkeypatch):
    """Make the start_agent fixture run `prefix... dist/tw-agent`."""

    def use(*prefix):
        monkeypatch.setenv("TWAGENT_UNDER_TEST", shlex.join([*prefix, str(BINARY)]))

    use()
    return use


def test_binary_version_shows_version_and_commit(tmp_path):
    result = run([BINARY, "--version"], env={"XDG_CACHE_HOME": str(tmp_path)})
    out = result.stdout.decode().strip()
    assert result.returncode == 0, out
    assert re.fullmatch(r"tw-agent \S+ \(commit [0-9a-f]{7,40}\)", out), out


def test_binary_bootstrap_meets_the_glibc_floor():
    result = run([sys.executable, FLOOR_CHECK, "--max", GLIBC_TARGET, BINARY])
    assert result.returncode == 0, result.stdout.decode()


def test_binary_unpacks_under_home_cache_and_meets_the_floor(
    binary_under_test, start_agent, platform, tmp_path
):
    agent = start_agent()
    platform.wait_session(timeout=30)
    cache = tmp_path / "home" / ".cache"
    folders = unpack_folders(cache)
    assert len(folders) == 1, folders
    assert (folders[0].stat().st_mode & 0o777) == 0o700
    result = run([sys.executable, FLOOR_CHECK, "--max", GLIBC_TARGET, folders[0]])
    assert result.returncode == 0, result.stdout.decode()
    agent.signal()
    assert agent.wait(30) == 0
    assert unpack_folders(cache) == []


def test_binary_unpacks_under_xdg_cache_home(tmp_path):
    cache = tmp_path / "xdg"
    env = {"XDG_CACHE_HOME": str(cache), "HOME": str(tmp_path / "home")}
    result = run([BINARY, "--version"], env=env)
    assert result.returncode == 0, result.stdout.decode()
    assert (cache / "tw-agent").is_dir()
    assert not (tmp_path / "home").exists()
    assert unpack_folders(cache) == []


@needs_root
def test_binary_runs_with_a_noexec_tmpdir(tmp_path):
    noexec = tmp_path / "noexec"
    noexec.mkdir()
    script = (
        'mount -t tmpfs -o noexec tmpfs "$1" && cp "$2" "$1/probe" && '
        '! "$1/probe" --version 2>/dev/null && TMPDIR="$1" exec "$2" --version'
    )
    env = {"XDG_CACHE_HOME": str(tmp_path / "cache")}
    args = ["unshare", "-m", "sh", "-c", script, "sh", noexec, BINARY]
    result = run(args, env=env)
    assert result.returncode == 0, result.stdout.decode()
    assert result.stdout.decode().startswith("tw-agent ")


def test_binary_survives_concurrent_cold_starts(tmp_path):
    def start(cache):
        return run([BINARY, "--version"], env={"XDG_CACHE_HOME": str(cache)})

    failures = []
    with concurrent.futures.ThreadPoolExecutor(CONCURRENT) as pool:
        for round_number in range(ROUNDS):
            cache = tmp_path / f"round{round_number}"
            results = list(pool.map(start, [cache] * CONCURRENT))
            failures += [r for r in results if r.returncode != 0]
            assert unpack_folders(cache) == []
    assert not failures, [(r.returncode, r.stdout[-300:]) for r in failures]


def test_binary_removes_stale_unpack_folders_only(tmp_path):
    area = tmp_path / "cache" / "tw-agent"
    old = time.time() - 2 * 3600
    dead, fresh, live = (area / f"run-{n}-1" for n in (1, 2, 3))
    for folder in (dead, fresh, live):
        folder.mkdir(parents=True)
        (folder / "tw-agent.bin").write_bytes(b"x" * 1000)
    for folder in (dead, live):
        os.utime(folder, (old, old))
    with open(live / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        result = run([BINARY, "--version"], env={"XDG_CACHE_HOME": str(area.parent)})
    assert result.returncode == 0, result.stdout.decode()
    assert not dead.exists(), "an old, unlocked folder is left from a dead agent"
    assert fresh.exists(), "a recent folder may still be unpacking"
    assert live.exists(), "a locked folder belongs to a running agent"


# Hides the build's CA paths in a private mount namespace: /etc seen through
# an overlay with /etc/ssl and /etc/pki removed, an empty /usr/lib/ssl (the
# bundled OpenSSL's compiled-in directory), then the fixture CA placed at
# one distribution's bundle path. SSL_CERT_FILE is dropped, so the agent
# must find the bundle itself.
HIDE_CA = r"""
set -eu
layer=$1 bundle=$2
shift 2
mkdir -p "$layer/upper" "$layer/work" "$layer/empty"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$layer/upper,workdir=$layer/work" /etc
rm -rf /etc/ssl /etc/pki
mount --bind "$layer/empty" /usr/lib/ssl
if [ "$bundle" != none ]; then
    mkdir -p "${bundle%/*}"
    cp "$SSL_CERT_FILE" "$bundle"
fi
unset SSL_CERT_FILE SSL_CERT_DIR
exec "$@"
"""

LAYOUTS = {
    "debian": "/etc/ssl/certs/ca-certificates.crt",
    "rhel": "/etc/pki/tls/certs/ca-bundle.crt",
    "rhel-extracted": "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "suse": "/etc/ssl/ca-bundle.pem",
}


@needs_root
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_binary_finds_the_ca_bundle_of(
    layout, binary_under_test, start_agent, platform, tmp_path
):
    layer = tmp_path / "layer"
    binary_under_test(
        "unshare", "-m", "sh", "-c", HIDE_CA, "sh", str(layer), LAYOUTS[layout]
    )
    agent = start_agent()
    platform.wait_session(timeout=30)
    agent.signal()
    assert agent.wait(30) == 0


@needs_root
def test_binary_trusts_nothing_with_every_bundle_hidden(
    binary_under_test, start_agent, platform, tmp_path
):
    binary_under_test(
        "unshare", "-m", "sh", "-c", HIDE_CA, "sh", str(tmp_path / "layer"), "none"
    )
    agent = start_agent()
    agent.wait_for("could not be verified", timeout=30)
