#!/bin/bash
# The agent from a pyz on one of the chroot's Pythons, for TWAGENT_UNDER_TEST:
#   chroot-agent.sh PYTHON PYZ [AGENT ARGS...]
# The pyz's folder is bound at /mnt/twagent; the host's /tmp, where the
# test fixtures keep the CA file, homes and work dirs, at /tmp. The chroot
# shares the host's network, so the fixture platform on 127.0.0.1 answers.
# Only shell builtins here: the caller's PATH may hold no tools at all.
set -euo pipefail
here=$(cd "${0%/*}" && pwd)
python=$1
pyz_dir=$(cd "${2%/*}" && pwd)
pyz_name=${2##*/}
shift 2
export TWAGENT_CHROOT_MNT=$pyz_dir
exec "$here/chroot-run.sh" "${TWAGENT_CHROOT:-/var/cache/twagent-chroot}" \
    "/usr/bin/$python" -I "/mnt/twagent/$pyz_name" "$@"
