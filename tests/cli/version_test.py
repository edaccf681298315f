#!/usr/bin/python3
"""`meshrun --version`: four lines that say what the binary is and how it was built.

    /usr/bin/python3 tests/cli/version_test.py MESHRUN PROJECT_VERSION LIBGPIOD_API SD_NOTIFY LINKAGE BUILD_TYPE SOURCE_DIR

The build's facts come from CMake: the project's version, the libgpiod API the drivers were built
against (1, 2 or none), how sd_notify is built (`libsystemd VERSION` or `built in`), `static` or
`dynamic`, the build type. In a git checkout the first line names `git describe` of the sources.

Prints one line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import os
import re
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import expect, run_checks  # noqa: E402

MESHRUN, VERSION, GPIOD_API, SD_NOTIFY, LINKAGE, BUILD_TYPE, SOURCE_DIR = sys.argv[1:8]

started = time.monotonic()
result = subprocess.run([MESHRUN, "--version"], capture_output=True, text=True, timeout=10)
took = time.monotonic() - started
lines = result.stdout.splitlines()


def shape():
    expect(result.returncode == 0, f"exit {result.returncode}: {result.stderr}")
    expect(result.stderr == "", f"stderr: {result.stderr!r}")
    expect(len(lines) == 4, f"not four lines:\n{result.stdout}")
    expect([line.split(" ", 1)[0] for line in lines] == ["meshrun", "libgpiod:", "systemd:", "build:"],
           f"the lines:\n{result.stdout}")
    expect(took < 2, f"--version took {took:.1f} s")


def describe_of_sources():
    """`git describe` of the sources when they are a git checkout (the test's own view), else None."""
    git = shutil.which("git")
    if not git:
        return None
    top = subprocess.run([git, "-C", SOURCE_DIR, "rev-parse", "--show-toplevel"], capture_output=True, text=True)
    if top.returncode != 0 or os.path.realpath(top.stdout.strip()) != os.path.realpath(SOURCE_DIR):
        return None
    return subprocess.run([git, "-C", SOURCE_DIR, "describe", "--always", "--tags"], capture_output=True,
                          text=True).stdout.strip()


def version_line():
    m = re.fullmatch(r"meshrun (\S+)(?: \((\S+)\))?", lines[0])
    expect(m, f"the first line: {lines[0]!r}")
    expect(m.group(1) == VERSION, f"version {m.group(1)}, the project's is {VERSION}")
    describe = describe_of_sources()
    if describe is None:
        expect(m.group(2) is None, f"a git describe outside a checkout: {lines[0]!r}")
    else:
        # The build took it; the sources may have been edited since (-dirty either way).
        expect(m.group(2) is not None and m.group(2).removesuffix("-dirty") == describe,
               f"{lines[0]!r}: not `git describe` of the sources ({describe})")


def libgpiod_line():
    if GPIOD_API == "none":
        expect(lines[1].startswith("libgpiod: none"), lines[1])
    else:
        expect(re.fullmatch(rf"libgpiod: API {GPIOD_API} \(libgpiod {GPIOD_API}\.[0-9.]+\)", lines[1]),
               f"{lines[1]!r}: not API {GPIOD_API}")


def systemd_line():
    if SD_NOTIFY.startswith("libsystemd "):
        expected = f"systemd: sd_notify from {SD_NOTIFY}"
    elif LINKAGE == "static":
        expected = "systemd: sd_notify built in (static binary)"
    else:
        expected = "systemd: sd_notify built in (no libsystemd at build time)"
    expect(lines[2] == expected, f"{lines[2]!r}, expected {expected!r}")


def build_line():
    expected = f"build: {BUILD_TYPE}, {LINKAGE}"
    expect(lines[3] == expected, f"{lines[3]!r}, expected {expected!r}")
    if shutil.which("file"):
        kind = subprocess.run(["file", "-L", MESHRUN], capture_output=True, text=True).stdout
        expect(("statically linked" in kind or "static-pie" in kind) == (LINKAGE == "static"), f"file says: {kind}")


checks = [
    ("four lines, exit 0, quickly", shape),
    ("the project's version, and git describe in a checkout", version_line),
    ("the libgpiod API of the build", libgpiod_line),
    ("how sd_notify is built", systemd_line),
    ("the build type and linkage", build_line),
]
sys.exit(1 if run_checks(checks) else 0)
