"""Static checks run with the tests: ruff, formatting, the Python 3.6 floor."""

import pathlib
import re
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "twagent"
# What vermin cannot see: keywords on methods, new builtins, modules that
# exist only on newer Pythons.
DENIED = [
    r"cancel_futures\s*=",
    r"importlib\.metadata",
    r"importlib_metadata",
    r"from __future__ import annotations",
    r"\bminimum_version\b",
    r"\bmaximum_version\b",
    r"\bbreakpoint\(",
    r"ExceptionGroup",
    r"\.removeprefix\(",
    r"\.removesuffix\(",
    r"capture_output\s*=",
    r"\btext\s*=\s*True",
    r"process_group\s*=",
    r"\bdataclass",
    r"asyncio\.run\(",
    r":=",
]


def tool(name):
    found = shutil.which(name) or str(pathlib.Path(sys.executable).parent / name)
    if not pathlib.Path(found).exists():
        pytest.fail(
            f"{name} is not installed; install the test extra: pip install '.[test]'"
        )
    return found


def run(args, cwd=ROOT):
    return subprocess.run(
        args, check=False, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )


def test_static_ruff_check_passes():
    result = run([tool("ruff"), "check", "twagent", "tests", "setup.py"])
    assert result.returncode == 0, result.stdout.decode()


def test_static_ruff_format_is_clean():
    result = run([tool("ruff"), "format", "--check", "twagent", "tests", "setup.py"])
    assert result.returncode == 0, result.stdout.decode()


def test_static_vermin_says_python36():
    files = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py"))
    args = [
        tool("vermin"),
        "-t=3.6-",
        "--violations",
        "--no-tips",
        "--eval-annotations",
    ]
    result = run(args + files, cwd=PACKAGE)
    assert result.returncode == 0, result.stdout.decode()


def test_static_denylist_finds_nothing_vermin_misses():
    hits = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in DENIED:
                if re.search(pattern, line):
                    hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
