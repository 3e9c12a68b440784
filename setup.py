"""Build script: bakes the git commit into the built twagent/version.py."""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py


def git_commit():
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=here,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("TWAGENT_COMMIT", "unknown")
    return out.decode().strip() or "unknown"


class BuildWithCommit(build_py):
    def run(self):
        super().run()
        # Read the source, not the build copy: build_py skips files that
        # look up to date, so an old build/ would keep an old commit.
        here = os.path.dirname(os.path.abspath(__file__))
        with open(os.path.join(here, "twagent", "version.py")) as f:
            text = f.read()
        target = os.path.join(self.build_lib, "twagent", "version.py")
        text = text.replace('COMMIT = "unknown"', f'COMMIT = "{git_commit()}"')
        with open(target, "w") as f:
            f.write(text)


setup(cmdclass={"build_py": BuildWithCommit})
