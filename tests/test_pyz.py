"""Tests of the built dist/twagent.pyz (packaging/build_pyz.py, tox -e pyz).

Every run is `python -I -S`: no site packages, no PYTHON* variables, so the
pyz can use nothing but the standard library and what it carries. The
end-to-end tests run against the pyz through TWAGENT_UNDER_TEST (tox.ini).
"""

import ast
import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PYZ = pathlib.Path(os.environ.get("TWAGENT_PYZ", str(ROOT / "dist" / "twagent.pyz")))
CHROOT = pathlib.Path(os.environ.get("TWAGENT_CHROOT", "/var/cache/twagent-chroot"))
CHROOT_AGENT = ROOT / "packaging" / "chroot-agent.sh"
CHROOT_RUN = ROOT / "packaging" / "chroot-run.sh"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        not PYZ.is_file(), reason=f"{PYZ} is not built: run `tox -e pyz`"
    ),
]

# Prints the release the launcher chooses, the one actually imported, and
# where it was imported from.
PROBE = """
import sys
sys.path.insert(0, sys.argv[1])
import _twagent_pyz as launcher
launcher.use_vendored()
import websocket
print(launcher.chosen_version(), websocket.__version__, websocket.__file__)
"""


def run(args, cwd=None, env=None):
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    full_env.update(env or {})
    return subprocess.run(
        [str(a) for a in args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        check=False,
        timeout=60,
        cwd=cwd,
        env=full_env,
    )


def source_version():
    text = (ROOT / "twagent" / "version.py").read_text()
    return re.search(r'^VERSION = "(.*)"$', text, re.MULTILINE).group(1)


def launcher_constants():
    """NEW_PYTHON, OLD, NEW as baked into the archive's launcher."""
    with zipfile.ZipFile(PYZ) as zf:
        text = zf.read("_twagent_pyz.py").decode()
    values = []
    for name in ("NEW_PYTHON", "OLD", "NEW"):
        line = re.search(rf"^{name} = (.*)$", text, re.MULTILINE)
        values.append(ast.literal_eval(line.group(1)))
    return tuple(values)


def test_pyz_version_shows_version_and_commit():
    result = run([sys.executable, "-I", "-S", PYZ, "--version"])
    out = result.stdout.decode().strip()
    assert result.returncode == 0, out
    match = re.fullmatch(r"tw-agent (\S+) \(commit ([0-9a-f]{7,40})\)", out)
    assert match, out
    assert match.group(1) == source_version()


def test_pyz_imports_its_own_websocket_client():
    result = run([sys.executable, "-I", "-S", "-c", PROBE, PYZ])
    assert result.returncode == 0, result.stdout.decode()
    chosen, imported, where = result.stdout.decode().split()
    assert imported == chosen
    assert where.startswith(str(PYZ) + os.sep), where


def test_pyz_launcher_picks_old_release_below_the_new_ones_python():
    new_python, old, new = launcher_constants()
    assert old == "1.3.1", "1.3.1 is the last websocket-client for Python 3.6"
    below = (new_python[0], new_python[1] - 1)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import _twagent_pyz as l; "
        f"print(l.chosen_version((3, 6)), l.chosen_version({below!r}), "
        f"l.chosen_version({new_python!r}), l.chosen_version((3, 99)))"
    )
    result = run([sys.executable, "-I", "-S", "-c", code, PYZ])
    assert result.stdout.decode().split() == [old, old, new, new]


def test_pyz_holds_no_tests_caches_or_metadata():
    with zipfile.ZipFile(PYZ) as zf:
        names = zf.namelist()
    assert "__main__.py" in names
    assert any(n.startswith("twagent/") for n in names)
    unwanted = [
        n
        for n in names
        if "/tests/" in n
        or "__pycache__" in n
        or ".dist-info" in n
        or n.endswith(".pyc")
    ]
    assert not unwanted


def test_pyz_launcher_and_old_release_say_python36(tmp_path):
    vermin = shutil.which("vermin") or str(
        pathlib.Path(sys.executable).parent / "vermin"
    )
    if not pathlib.Path(vermin).exists():
        pytest.fail("vermin is not installed: pip install '.[test]'")
    _, old, _ = launcher_constants()
    with zipfile.ZipFile(PYZ) as zf:
        zf.extract("_twagent_pyz.py", tmp_path)
        for name in zf.namelist():
            if name.startswith(f"_wsc/{old}/"):
                zf.extract(name, tmp_path)
    files = ["_twagent_pyz.py"] + sorted(
        str(p.relative_to(tmp_path)) for p in (tmp_path / "_wsc").rglob("*.py")
    )
    args = [vermin, "-t=3.6-", "--violations", "--no-tips", "--eval-annotations"]
    result = run(args + files, cwd=str(tmp_path))
    assert result.returncode == 0, result.stdout.decode()


@pytest.mark.parametrize("python", ["python3.9", "pypy3"])
def test_pyz_runs_in_the_bullseye_chroot(python):
    if os.geteuid() != 0 or not (CHROOT / "usr" / "bin" / python).exists():
        pytest.skip(f"needs root and {CHROOT} with {python}: packaging/chroot.sh")
    _, old, _ = launcher_constants()
    result = run([CHROOT_AGENT, python, PYZ, "--version"])
    assert result.returncode == 0, result.stdout.decode()
    assert result.stdout.decode().startswith(f"tw-agent {source_version()} (commit ")
    inside = f"/mnt/twagent/{PYZ.name}"
    probe = run(
        [CHROOT_RUN, CHROOT, f"/usr/bin/{python}", "-I", "-c", PROBE, inside],
        env={"TWAGENT_CHROOT_MNT": str(PYZ.resolve().parent)},
    )
    assert probe.returncode == 0, probe.stdout.decode()
    chosen, imported, _ = probe.stdout.decode().split()
    assert chosen == imported == old
