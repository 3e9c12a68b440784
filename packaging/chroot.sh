#!/usr/bin/env bash
# Sets up (or reuses) a Debian bullseye chroot: the oldest Debian reachable
# from this machine's mirror, used to build the binary against glibc 2.31
# headers and to run the pyz on python3.9 and pypy3 (Python 3.7).
# Usage: packaging/chroot.sh [ROOT]   (default /var/cache/twagent-chroot)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${1:-${TWAGENT_CHROOT:-/var/cache/twagent-chroot}}

# A stamp names what the chroot was built from: a changed script or pin
# list rebuilds it, an unchanged one makes a second run take a second.
stamp=$(cat "$0" "$here/build-requirements.txt" | sha256sum | cut -c1-16)
if [ "$(cat "$root/.twagent-stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "chroot: $root is ready ($stamp)"
    exit 0
fi

# Use the Debian mirror apt already uses here, never a hard-coded host.
mirror=$(sed -n 's/^URIs: *\([^ ]*debian\)\/*$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || { echo "chroot: no Debian mirror in apt's sources" >&2; exit 1; }

started=$(date +%s)
if findmnt -rn -o TARGET | grep -q "^$root"; then
    echo "chroot: something is mounted under $root; not touching it" >&2
    exit 1
fi
rm -rf "$root.new"
debootstrap --variant=minbase bullseye "$root.new" "$mirror" >"$root.log" 2>&1 \
    || { tail -20 "$root.log" >&2; exit 1; }
cp /etc/resolv.conf "$root.new/etc/resolv.conf"
cp "$here/build-requirements.txt" "$root.new/opt/build-requirements.txt"
mkdir -p "$root.new/mnt/twagent"

# pip in the chroot reaches the package index the way the host's pip does:
# with the CA bundle the host's pip is configured to trust (PIP_CERT or
# pip's cert setting), which the chroot's own store may lack.
pip_ca=${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}
if [ -n "$pip_ca" ] && [ -f "$pip_ca" ]; then
    cp "$pip_ca" "$root.new/opt/pip-ca.pem"
fi

# Packages and build tools go in through chroot-run.sh, whose private mount
# namespace takes /proc and /dev away again when it exits. procps gives
# the agent's commands `ps`, as on any login node. A clean environment:
# the host's SSL_CERT_FILE, REQUESTS_CA_BUNDLE and PIP_* point at host
# files that mean something else inside.
"$here/chroot-run.sh" "$root.new" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 sh -euc '
    export DEBIAN_FRONTEND=noninteractive
    if [ -f /opt/pip-ca.pem ]; then export PIP_CERT=/opt/pip-ca.pem; fi
    apt-get -q update
    apt-get -q install -y --no-install-recommends \
        python3.9 python3.9-dev python3.9-venv gcc make patchelf pypy3 procps \
        ca-certificates
    python3.9 -m venv /opt/build
    /opt/build/bin/pip install -q --upgrade pip
    /opt/build/bin/pip install -q -r /opt/build-requirements.txt
' >>"$root.log" 2>&1 || { tail -20 "$root.log" >&2; exit 1; }

echo "$stamp" >"$root.new/.twagent-stamp"
# chroot-run.sh mounts only in private namespaces, so nothing is mounted
# under $root here; check anyway before deleting a tree.
if findmnt -rn -o TARGET | grep -q "^$root/"; then
    echo "chroot: something is mounted under $root; not replacing it" >&2
    exit 1
fi
rm -rf "$root" && mv "$root.new" "$root"
echo "chroot: built $root in $(( $(date +%s) - started ))s"
