"""The glibc floor of ELF files: the newest GLIBC_x.y any of them needs.

`python packaging/glibc_floor.py --max 2.28 PATH...` checks every ELF file
under each PATH (a file or a folder), prints the floor of each file and of
all together, and exits 1 when the floor is above --max. A need marked WEAK
in `readelf -V` does not stop the loader on an older glibc, so it is listed
but not counted.
"""

import argparse
import pathlib
import re
import subprocess
import sys

NEED = re.compile(r"Name: GLIBC_([0-9][0-9.]*)\s+Flags: (\S+)")


def version(text):
    return tuple(int(part) for part in text.split("."))


def show(numbers):
    return ".".join(str(n) for n in numbers) if numbers else "none"


def is_elf(path):
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def elf_files(paths):
    for path in paths:
        path = pathlib.Path(path)
        candidates = sorted(path.rglob("*")) if path.is_dir() else [path]
        for candidate in candidates:
            if candidate.is_file() and not candidate.is_symlink() and is_elf(candidate):
                yield candidate


def needs(path):
    """(strict, weak): the GLIBC versions the file needs, as tuples."""
    out = subprocess.run(
        ["readelf", "-V", "--wide", str(path)],
        stdout=subprocess.PIPE,
        check=True,
    ).stdout.decode()
    strict, weak = set(), set()
    for number, flags in NEED.findall(out):
        (weak if "WEAK" in flags.upper() else strict).add(version(number))
    return strict, weak


def check(paths, maximum):
    """Print each file's floor; return the overall one and the file count."""
    floor, count = (), 0
    for path in elf_files(paths):
        strict, weak = needs(path)
        own = max(strict, default=())
        note = f" (weak: {show(max(weak))})" if weak and max(weak) > own else ""
        print(f"glibc floor {show(own):>6}  {path}{note}")
        floor, count = max(floor, own), count + 1
    return floor, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max", required=True, help="highest allowed, e.g. 2.28")
    parser.add_argument("paths", nargs="+")
    args = parser.parse_args()
    floor, count = check(args.paths, version(args.max))
    if count == 0:
        sys.exit("glibc floor: no ELF file found")
    verdict = "ok" if floor <= version(args.max) else "TOO HIGH"
    print(
        f"glibc floor: {show(floor)} over {count} ELF files; target {args.max}: {verdict}"
    )
    sys.exit(0 if verdict == "ok" else 1)


if __name__ == "__main__":
    main()
