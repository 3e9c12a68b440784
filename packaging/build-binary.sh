#!/usr/bin/env bash
# Builds dist/tw-agent: a Nuitka onefile binary, then checks that it and
# every ELF file it unpacks need no newer glibc than the target.
#   build-binary.sh              in the bullseye chroot (set up if missing),
#                                zig targeting glibc 2.28 (RHEL/Rocky 8)
#   build-binary.sh --manylinux  inside the manylinux2014 image (CentOS 7),
#                                its own gcc and glibc 2.17: release.yml
# Env: TWAGENT_CHROOT (default /var/cache/twagent-chroot),
#      TWAGENT_GLIBC_TARGET (default 2.28, or 2.17 with --manylinux).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(dirname "$here")
mode=${1:-chroot}
if [ "$mode" = --manylinux ]; then
    target=${TWAGENT_GLIBC_TARGET:-2.17}
    python=/opt/python/cp39-cp39/bin/python
    work=$top/build/binary inside=$top/build/binary
else
    target=${TWAGENT_GLIBC_TARGET:-2.28}
    python=python3
    root=${TWAGENT_CHROOT:-/var/cache/twagent-chroot}
    work=$root/opt/twagent-build inside=/opt/twagent-build
    "$here/chroot.sh" "$root"
fi

# Stage the sources: twagent from its wheel (the commit baked in),
# websocket-client 1.3.1 (what the pyz picks for Python 3.9), and the entry
# point that tidies the unpack folder.
rm -rf "$work" && mkdir -p "$work/src" "$work/wheels"
wheel=$("$python" "$here/twagent_wheel.py" "$work/wheels")
"$python" -m pip -q download --no-deps --only-binary=:all: --python-version=3.9 \
    -d "$work/wheels" websocket-client==1.3.1
"$python" -m zipfile -e "$wheel" "$work/src"
"$python" -m zipfile -e "$work"/wheels/websocket_client-*.whl "$work/src"
rm -rf "$work"/src/websocket/tests "$work"/src/*.dist-info
cp "$here/binary_main.py" "$work/src/tw-agent.py"
version=$(sed -n 's/^VERSION = "\(.*\)"$/\1/p' "$work/src/twagent/version.py")

# Each process unpacks into its own folder under the user's cache: never
# $TMPDIR (often noexec), and no two starts ever write the same files.
# The bootstrap passes SIGTERM, SIGINT and SIGQUIT on to the agent as
# SIGINT and, by default, SIGKILLs it 5 s later; "infinity" lets the agent's
# own --stop-grace decide instead (README.rst, "Known limitations").
nuitka_args=(
    --onefile --assume-yes-for-downloads --onefile-child-grace-time=infinity
    --include-package=twagent --include-package=websocket
    --onefile-tempdir-spec='{CACHE_DIR}/tw-agent/run-{PID}-{TIME_US}'
    --product-name=tw-agent --product-version="$version"
    --output-dir="$inside/out" --output-filename=tw-agent
    tw-agent.py
)
started=$(date +%s)
if [ "$mode" = --manylinux ]; then
    # Nuitka embeds libpython statically; manylinux ships it packed.
    (cd /opt/_internal && tar xf static-libs-for-embedding-only.tar.xz)
    grep -v '^ziglang' "$here/build-requirements.txt" >"$work/requirements.txt"
    "$python" -m pip -q install -r "$work/requirements.txt"
    (cd "$work/src" && NUITKA_UPDATE_CHECK=never "$python" -m nuitka "${nuitka_args[@]}") \
        </dev/null >"$work/nuitka.log" 2>&1 || { tail -30 "$work/nuitka.log" >&2; exit 1; }
else
    # zig uses its own glibc headers for the target, not Debian's multiarch
    # tree: hand it only the two it lacks, pyconfig.h and crypt.h. It reads
    # the glibc target from CCFLAGS/LDFLAGS, which Nuitka passes on.
    mkdir -p "$work/inc/x86_64-linux-gnu"
    ln -s /usr/include/x86_64-linux-gnu/python3.9 "$work/inc/x86_64-linux-gnu/python3.9"
    ln -s /usr/include/crypt.h "$work/inc/crypt.h"
    "$here/chroot-run.sh" "$root" env -i HOME=/root LANG=C.UTF-8 \
        PATH=/opt/build/lib/python3.9/site-packages/ziglang:/opt/build/bin:/usr/bin:/bin \
        NUITKA_UPDATE_CHECK=never \
        CCFLAGS="-target x86_64-linux-gnu.$target -I$inside/inc" \
        LDFLAGS="-target x86_64-linux-gnu.$target -L/usr/lib/x86_64-linux-gnu" \
        sh -euc 'cd "$0/src" && exec python -m nuitka --zig "$@"' "$inside" \
        "${nuitka_args[@]}" </dev/null >"$work/nuitka.log" 2>&1 \
        || { tail -30 "$work/nuitka.log" >&2; exit 1; }
fi
echo "binary: Nuitka build took $(( $(date +%s) - started ))s"

# The payload is compressed inside the binary; the .dist folder beside it
# holds exactly the files that get unpacked.
"$python" "$here/glibc_floor.py" --max "$target" \
    "$work/out/tw-agent" "$work/out/tw-agent.dist" >"$work/floor.txt" \
    || { cat "$work/floor.txt" >&2; exit 1; }
tail -1 "$work/floor.txt"
mkdir -p "$top/dist"
cp "$work/out/tw-agent" "$top/dist/tw-agent.partial"
mv "$top/dist/tw-agent.partial" "$top/dist/tw-agent"
echo "binary: $top/dist/tw-agent ($(stat -c %s "$top/dist/tw-agent") bytes)"
