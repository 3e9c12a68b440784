"""Start-up of twagent.pyz: put one vendored websocket-client on sys.path.

Stored in the archive as _twagent_pyz.py and run by its __main__.py on the
main thread, before twagent is imported. Python 3.6 syntax only: this is the
first code a bare system python3 runs. build_pyz.py rewrites the three
constants below from the wheels it bundles.
"""

import os
import sys

# The newest release's Requires-Python; older Pythons get the last 3.6 one.
NEW_PYTHON = (3, 10)
OLD = "1.3.1"
NEW = "1.9.2"


def chosen_version(version_info=None):
    """The vendored websocket-client release for this interpreter."""
    version_info = version_info or sys.version_info
    return NEW if tuple(version_info[:2]) >= NEW_PYTHON else OLD


def use_vendored():
    """Put the chosen release first on sys.path; return its folder.

    This module sits at the top of the archive, so its folder is the
    archive itself, and zipimport reads folders inside it.
    """
    archive = os.path.dirname(os.path.abspath(__file__))
    folder = os.path.join(archive, "_wsc", chosen_version())
    sys.path.insert(0, folder)
    return folder


def main():
    use_vendored()
    from twagent.cli import entry_point

    entry_point()
