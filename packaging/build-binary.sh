#!/usr/bin/env bash
# Builds dist/tw-agent: a Nuitka onefile binary made in the bullseye chroot
# with zig targeting an old glibc, then checks that the binary and every
# ELF file it unpacks need no newer glibc than the target.
# Env: TWAGENT_CHROOT (default /var/cache/twagent-chroot),
#      TWAGENT_GLIBC_TARGET (default 2.28: RHEL/Rocky 8).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
root=${TWAGENT_CHROOT:-/var/cache/twagent-chroot}
target=${TWAGENT_GLIBC_TARGET:-2.28}
"$here/chroot.sh" "$root"

# Stage the sources inside the chroot: twagent from its wheel (the commit
# baked in), websocket-client 1.3.1 (what the pyz picks for Python 3.9),
# and the entry point that tidies the unpack folder.
work=$root/opt/twagent-build
rm -rf "$work" && mkdir -p "$work/src" "$work/wheels"
wheel=$(python3 "$here/twagent_wheel.py" "$work/wheels")
python3 -m pip -q download --no-deps --only-binary=:all: --python-version=3.9 \
    -d "$work/wheels" websocket-client==1.3.1
python3 -m zipfile -e "$wheel" "$work/src"
python3 -m zipfile -e "$work"/wheels/websocket_client-*.whl "$work/src"
rm -rf "$work"/src/websocket/tests "$work"/src/*.dist-info
cp "$here/binary_main.py" "$work/src/tw-agent.py"
# zig uses its own glibc headers for the target, not Debian's multiarch
# tree, so hand it only the two headers it lacks: Python's pyconfig.h and
# crypt.h (for the _crypt module).
mkdir -p "$work/inc/x86_64-linux-gnu"
ln -s /usr/include/x86_64-linux-gnu/python3.9 "$work/inc/x86_64-linux-gnu/python3.9"
ln -s /usr/include/crypt.h "$work/inc/crypt.h"
version=$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$work/src/twagent/version.py")

# Each process unpacks into its own folder under the user's cache: never
# $TMPDIR (often noexec), and no two starts ever write the same files.
# zig reads the glibc target from CCFLAGS/LDFLAGS; Nuitka passes them on.
started=$(date +%s)
"$here/chroot-run.sh" "$root" env -i HOME=/root LANG=C.UTF-8 \
    PATH=/opt/build/lib/python3.9/site-packages/ziglang:/opt/build/bin:/usr/bin:/bin \
    NUITKA_UPDATE_CHECK=never \
    CCFLAGS="-target x86_64-linux-gnu.$target -I/opt/twagent-build/inc" \
    LDFLAGS="-target x86_64-linux-gnu.$target -L/usr/lib/x86_64-linux-gnu" \
    sh -euc 'cd /opt/twagent-build/src && exec python -m nuitka "$@"' nuitka \
    --onefile --zig --assume-yes-for-downloads \
    --include-package=twagent --include-package=websocket \
    --onefile-tempdir-spec='{CACHE_DIR}/tw-agent/run-{PID}-{TIME_US}' \
    --product-name=tw-agent --product-version="$version" \
    --output-dir=/opt/twagent-build/out --output-filename=tw-agent \
    tw-agent.py </dev/null >"$work/nuitka.log" 2>&1 \
    || { tail -30 "$work/nuitka.log" >&2; exit 1; }
echo "binary: Nuitka build took $(( $(date +%s) - started ))s"

# The payload is compressed inside the binary; the .dist folder beside it
# holds exactly the files that get unpacked.
python3 "$here/glibc_floor.py" --max "$target" \
    "$work/out/tw-agent" "$work/out/tw-agent.dist" >"$work/floor.txt" \
    || { cat "$work/floor.txt" >&2; exit 1; }
tail -1 "$work/floor.txt"
mkdir -p "$top/dist"
cp "$work/out/tw-agent" "$top/dist/tw-agent.partial"
mv "$top/dist/tw-agent.partial" "$top/dist/tw-agent"
echo "binary: $top/dist/tw-agent ($(stat -c %s "$top/dist/tw-agent") bytes)"
