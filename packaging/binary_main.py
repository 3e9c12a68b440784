"""Entry point of the Nuitka binary: tidy the unpack area, then run the agent.

Runs on the main thread of the unpacked program. The onefile bootstrap
unpacks each process into its own folder, UNPACK_ROOT/run-PID-TIME (see
build-binary.sh), and removes it when the program exits. A folder is left
behind only when the bootstrap itself was killed; on a small home quota
those add up, so each start removes the ones no live agent holds.

Lock: each running agent holds an exclusive flock on `.lock` in its own
folder for its whole life; the kernel drops it when the process dies. A
starting agent deletes a sibling only when it can take that lock itself
and the folder is older than STALE_SECONDS, which a folder still being
unpacked (not yet locked) never is.
"""

import fcntl
import os
import shutil
import sys
import time

STALE_SECONDS = 3600
PREFIX = "run-"


def own_folder():
    """This process's unpack folder, or None when not run from one."""
    folder = os.path.dirname(os.path.abspath(__file__))
    if not os.path.basename(folder).startswith(PREFIX):
        return None
    return folder


def hold_lock(folder):
    """Take this folder's lock; the open file, or None where locks fail."""
    try:
        # Left open on purpose: the lock lasts as long as the file is open.
        handle = open(os.path.join(folder, ".lock"), "w")  # noqa: SIM115
    except OSError:
        return None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        return None
    return handle


def is_stale(folder, now):
    try:
        if now - os.stat(folder).st_mtime < STALE_SECONDS:
            return False
        with open(os.path.join(folder, ".lock"), "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
    except OSError:
        return False


def remove_stale(folder):
    """Delete the siblings of `folder` that no live agent holds."""
    parent, now = os.path.dirname(folder), time.time()
    for name in os.listdir(parent):
        sibling = os.path.join(parent, name)
        if name.startswith(PREFIX) and sibling != folder and is_stale(sibling, now):
            shutil.rmtree(sibling, ignore_errors=True)


def main():
    folder = own_folder()
    if folder:
        # Without a lock of our own (no flock on this file system) a sibling
        # cannot tell us from a dead agent either, so delete nothing.
        lock = hold_lock(folder)
        if lock:
            remove_stale(folder)
    from twagent.cli import entry_point

    entry_point()


if __name__ == "__main__":
    sys.exit(main())
