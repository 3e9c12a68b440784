"""Builds dist/twagent.pyz: the agent and two websocket-client releases.

One file for a bare `python3` (3.6 or newer) with nothing installed. The
launcher (pyz_launcher.py, the archive's __main__) picks the vendored
websocket-client by the running Python: the newest pinned release from the
Python its metadata asks for, 1.3.1 (the last for 3.6) below that.
Run on the host: `python packaging/build_pyz.py [--output PATH]`.
"""

import argparse
import email.parser
import pathlib
import subprocess
import sys
import tempfile
import zipfile

import twagent_wheel

ROOT = pathlib.Path(__file__).resolve().parent.parent
LAUNCHER = pathlib.Path(__file__).resolve().parent / "pyz_launcher.py"
OLD_WSC = "1.3.1"
NEW_WSC = "1.9.2"
MAIN = "import _twagent_pyz\n\n_twagent_pyz.main()\n"
# A fixed timestamp makes two builds of one commit byte-identical.
ZIP_TIME = (2020, 1, 1, 0, 0, 0)


def pip(*args, cwd=None):
    subprocess.run([sys.executable, "-m", "pip", "-q", *args], check=True, cwd=cwd)


def fetch_wheels(scratch):
    """The twagent wheel (setup.py bakes the commit) and both vendored ones."""
    own = twagent_wheel.build_wheel(scratch / "own")
    for version in (OLD_WSC, NEW_WSC):
        pip(
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--python-version=3.6" if version == OLD_WSC else "--python-version=3.11",
            "-d",
            str(scratch / version),
            f"websocket-client=={version}",
        )
    return own, {v: next((scratch / v).glob("*.whl")) for v in (OLD_WSC, NEW_WSC)}


def minimum_python(wheel):
    """The lowest (major, minor) the wheel's Requires-Python accepts."""
    with zipfile.ZipFile(wheel) as zf:
        name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = email.parser.Parser().parsestr(zf.read(name).decode())
    spec = meta["Requires-Python"] or ""
    if not spec.startswith(">="):
        raise SystemExit(f"{wheel.name}: cannot read Requires-Python {spec!r}")
    major, minor = spec[2:].split(",")[0].strip().split(".")[:2]
    return int(major), int(minor)


def members(wheel, package, prefix=""):
    """(archive name, bytes) for `package`'s files, tests left out."""
    with zipfile.ZipFile(wheel) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if parts[0] != package or "tests" in parts or name.endswith("/"):
                continue
            yield prefix + name, zf.read(name)


def add(zf, name, data):
    info = zipfile.ZipInfo(name, ZIP_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    zf.writestr(info, data)


def launcher_source(switch):
    """pyz_launcher.py with the bundled versions written into it."""
    text = LAUNCHER.read_text()
    for old, new in [
        ("NEW_PYTHON = (3, 10)", f"NEW_PYTHON = {switch!r}"),
        ('OLD = "1.3.1"', f'OLD = "{OLD_WSC}"'),
        ('NEW = "1.9.2"', f'NEW = "{NEW_WSC}"'),
    ]:
        if text.count(old) != 1:
            raise SystemExit(f"{LAUNCHER.name}: expected one line {old!r}")
        text = text.replace(old, new)
    return text


def build(output):
    with tempfile.TemporaryDirectory() as tmp:
        own, vendored = fetch_wheels(pathlib.Path(tmp))
        switch = minimum_python(vendored[NEW_WSC])
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_suffix(".partial")
        with open(partial, "wb") as raw:
            raw.write(b"#!/usr/bin/env python3\n")
            with zipfile.ZipFile(raw, "w") as zf:
                add(zf, "__main__.py", MAIN)
                add(zf, "_twagent_pyz.py", launcher_source(switch))
                for name, data in members(own, "twagent"):
                    add(zf, name, data)
                for version, wheel in sorted(vendored.items()):
                    for name, data in members(wheel, "websocket", f"_wsc/{version}/"):
                        add(zf, name, data)
        partial.chmod(0o755)
        partial.replace(output)
    print(f"pyz: {output} ({output.stat().st_size} bytes); websocket-client")
    print(f"pyz: {NEW_WSC} from Python {switch[0]}.{switch[1]}, {OLD_WSC} below")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output", type=pathlib.Path, default=ROOT / "dist/twagent.pyz"
    )
    build(parser.parse_args().output)


if __name__ == "__main__":
    main()
