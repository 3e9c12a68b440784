#!/bin/bash
# Runs a command in the chroot: chroot-run.sh ROOT COMMAND [ARG...]
# The mounts (/proc, /dev, the host's /tmp, and TWAGENT_CHROOT_MNT at
# /mnt/twagent) live in a private mount namespace, so the kernel undoes
# them when the command exits, however it exits; nothing leaks to the host.
# Every step execs, so COMMAND keeps this script's PID and gets its signals.
# COMMAND starts in the current directory when the chroot has it (any
# folder under /tmp), else in /. Tools are named by absolute path: the
# tests run the agent with PATHs that lack sbin or even bash, and COMMAND
# must get the caller's PATH unchanged.
set -euo pipefail
root=$1
shift
exec /usr/bin/unshare --mount --propagation private /bin/bash -euc '
    root=$1 mnt=$2
    shift 2
    /bin/mount -t proc proc "$root/proc"
    /bin/mount --rbind /dev "$root/dev"
    /bin/mount --bind /tmp "$root/tmp"
    if [ -n "$mnt" ]; then /bin/mount --bind "$mnt" "$root/mnt/twagent"; fi
    exec /usr/sbin/chroot "$root" /bin/sh -c '\''cd "$0" 2>/dev/null || cd /; exec "$@"'\'' "$PWD" "$@"
' chroot-run "$root" "${TWAGENT_CHROOT_MNT:-}" "$@"
