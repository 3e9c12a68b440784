#!/usr/bin/env bash
# Runs a command in the chroot: chroot-run.sh ROOT COMMAND [ARG...]
# The mounts (/proc, /dev, the host's /tmp, and TWAGENT_CHROOT_MNT at
# /mnt/twagent) live in a private mount namespace, so the kernel undoes
# them when the command exits, however it exits; nothing leaks to the host.
# Every step execs, so COMMAND keeps this script's PID and gets its signals.
# COMMAND starts in the current directory when the chroot has it (any
# folder under /tmp), else in /.
set -euo pipefail
root=$1
shift
exec unshare --mount --propagation private bash -euc '
    root=$1 mnt=$2
    shift 2
    mount -t proc proc "$root/proc"
    mount --rbind /dev "$root/dev"
    mount --bind /tmp "$root/tmp"
    if [ -n "$mnt" ]; then mount --bind "$mnt" "$root/mnt/twagent"; fi
    exec chroot "$root" /bin/sh -c '\''cd "$0" 2>/dev/null || cd /; exec "$@"'\'' "$PWD" "$@"
' chroot-run "$root" "${TWAGENT_CHROOT_MNT:-}" "$@"
