"""Builds the twagent wheel for the pyz and the binary, commit baked in.

setup.py copies twagent/ into build/lib only when the source is newer, so a
stale build/ in the checkout keeps an old commit in version.py. Building
from a fresh copy of the tree, with the checkout's commit handed over in
TWAGENT_COMMIT, avoids that. A TWAGENT_COMMIT already set wins (a CI
container where git refuses a checkout owned by another user). `python packaging/twagent_wheel.py OUTDIR` prints the
wheel's path.
"""

import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
TREE = ["setup.py", "setup.cfg", "README.rst", "twagent"]


def commit():
    """The checkout's short commit; TWAGENT_COMMIT where git cannot tell."""
    if os.environ.get("TWAGENT_COMMIT"):
        return os.environ["TWAGENT_COMMIT"][:7]
    result = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        check=False,
    )
    return result.stdout.decode().strip() or "unknown"


def build_wheel(outdir):
    """Build into `outdir`; return the wheel's path."""
    outdir = pathlib.Path(outdir)
    with tempfile.TemporaryDirectory() as tmp:
        copy = pathlib.Path(tmp) / "src"
        copy.mkdir()
        for name in TREE:
            source = ROOT / name
            if source.is_dir():
                ignore = shutil.ignore_patterns("__pycache__")
                shutil.copytree(source, copy / name, ignore=ignore)
            else:
                shutil.copy2(source, copy / name)
        env = dict(os.environ, TWAGENT_COMMIT=commit())
        subprocess.run(
            [sys.executable, "-m", "pip", "-q", "wheel", "--no-deps"]
            + ["-w", str(outdir), str(copy)],
            check=True,
            env=env,
        )
    return next(outdir.glob("twagent-*.whl"))


if __name__ == "__main__":
    print(build_wheel(sys.argv[1]))
