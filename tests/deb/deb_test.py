#!/usr/bin/python3
"""meshrun's Debian packages (tools/dev.sh package), one architecture a run:

    deb_test.py build ARCH    build the package; its control fields, files, binary and sizes
    deb_test.py lint ARCH     lintian on it: no error or warning that packaging/ does not explain
    deb_test.py emulate ARCH  the packaged binary run under qemu-user-static: --version, check of
                              every packaged topology, test of arduino.mesh (websockets on loopback)
    deb_test.py systemd       the amd64 package's binary (libsystemd's sd_notify) through the cli
                              tests of readiness and of the journal
    deb_test.py install       the amd64 package put into a fresh Debian 12 root with dpkg -i: the
                              user and group made, check runs from it, systemd-analyze verify

Exit 77 (ctest's SKIPPED) with the reason when what a step needs is not on this machine.
"""

import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import expect, run_checks  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("MESHRUN_BUILD_DIR") or os.getcwd()
OUT = os.path.join(BUILD, "packages")
TRIPLET = {"amd64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu", "armhf": "arm-linux-gnueabihf"}
MACHINE = {"amd64": "x86-64", "arm64": "ARM aarch64", "armhf": "ARM, EABI5"}
QEMU = {"arm64": "qemu-aarch64-static", "armhf": "qemu-arm-static"}
# A fresh Debian 12 root as a board has it (systemd, man-db) with the libraries meshrun links (which
# `apt install` would pull), kept between runs: made once by debootstrap (a minute or two), outside
# the clone, named by what it includes.
ROOT_INCLUDES = "systemd,man-db,libgpiod2,libssl3"
ROOT_CACHE = os.path.join(os.environ.get("MESHRUN_DEBOOTSTRAP_CACHE", "/var/cache/meshrun"),
                          f"bookworm-minbase-{ROOT_INCLUDES.replace(',', '-')}.tar")


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(77)


def run(*cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)


def installed(package):
    r = run("dpkg-query", "-W", "-f=${Status}", package)
    return r.returncode == 0 and "install ok installed" in r.stdout


def deb_path(arch):
    return os.path.join(OUT, f"meshrun_{version()}-1_{arch}.deb")


def version():
    with open(os.path.join(ROOT, "CMakeLists.txt")) as f:
        for line in f:
            if line.startswith("project(meshrun VERSION "):
                return line.split()[2]
    raise RuntimeError("no version in CMakeLists.txt")


def need_deb(arch):
    if not os.path.exists(deb_path(arch)):
        skip(f"no {arch} package: its build was skipped or failed (see `package: build {arch}`)")


def build(arch):
    native = run("dpkg", "--print-architecture").stdout.strip()
    needed = ["dpkg-dev", "file", f"libgpiod-dev:{arch}", f"libssl-dev:{arch}", f"libsystemd-dev:{arch}"]
    if arch != native:
        needed.append(f"crossbuild-essential-{arch}")
    missing = [p for p in needed if not installed(p)]
    if missing:
        skip(f"not installed: {' '.join(missing)} (tools/dev.sh package installs them)")
    if os.path.exists(deb_path(arch)):
        os.remove(deb_path(arch))
    r = run("bash", os.path.join(ROOT, "tools", "dev.sh"), "package", arch, timeout=1500,
            env=dict(os.environ, MESHRUN_BUILD_DIR=BUILD))
    print(r.stdout[-3000:], r.stderr[-3000:], sep="\n")
    deb = deb_path(arch)
    unpacked = tempfile.mkdtemp(prefix=f"meshrun-deb-{arch}-")
    control = {}

    def built():
        expect(r.returncode == 0, f"tools/dev.sh package {arch} exited {r.returncode}")
        expect(os.path.exists(deb), f"no {deb}")

    def fields():
        for line in run("dpkg-deb", "--field", deb).stdout.splitlines():
            if ":" in line and not line.startswith(" "):
                key, value = line.split(":", 1)
                control[key] = value.strip()
        expect(control.get("Architecture") == arch, f"Architecture: {control.get('Architecture')}")
        expect(control.get("Version") == f"{version()}-1", f"Version: {control.get('Version')}")
        depends = control.get("Depends", "")
        # From the shared libraries the binary links (dpkg-shlibdeps), with versions.
        names = {d.split()[0] for d in depends.replace("|", ",").split(",") if d.strip()}
        for lib in ("libc6", "libgpiod2", "libssl3", "libsystemd0", "libstdc++6"):
            expect(lib in names, f"Depends has no {lib}: {depends}")
        expect("libc6 (>= 2." in depends, f"Depends has no version of libc6: {depends}")
        expect("systemd | systemd-standalone-sysusers" in depends, f"Depends: {depends}")
        expect("libboost" not in depends and "libfmt" not in depends, f"header-only libraries in Depends: {depends}")

    def files():
        listing = run("dpkg-deb", "--contents", deb).stdout
        for path in ("./usr/bin/meshrun", "./usr/share/man/man1/meshrun.1.gz",
                     "./lib/systemd/system/meshrun@.service", "./usr/lib/sysusers.d/meshrun.conf",
                     "./usr/share/bash-completion/completions/meshrun", "./usr/share/doc/meshrun/copyright",
                     "./usr/share/doc/meshrun/changelog.Debian.gz", "./usr/share/doc/meshrun/README.md",
                     "./usr/share/doc/meshrun/docs/install.md",
                     "./usr/share/meshrun/topologies/arduino.mesh"):
            expect(f" {path}\n" in listing, f"{path} not in the package:\n{listing}")
        expect("/build" not in listing and "/tests/" not in listing, f"build or test files packaged:\n{listing}")
        scripts = run("dpkg-deb", "--ctrl-tarfile", deb)
        expect(scripts.returncode == 0, "no control archive")

    def binary():
        expect(run("dpkg-deb", "-x", deb, unpacked).returncode == 0, "dpkg-deb -x failed")
        exe = os.path.join(unpacked, "usr", "bin", "meshrun")
        described = run("file", "-b", exe).stdout
        expect(MACHINE[arch] in described, f"not an {arch} binary: {described}")
        expect("dynamically linked" in described, f"not linked dynamically: {described}")
        expect(", stripped" in described, f"not stripped: {described}")
        print(f"size: {os.path.basename(deb)} {os.path.getsize(deb):,} bytes; "
              f"usr/bin/meshrun {os.path.getsize(exe):,} bytes")

    try:
        return run_checks([(f"the {arch} package builds", built), ("its control fields", fields),
                           ("its files", files), ("its binary", binary)])
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def lint(arch):
    need_deb(arch)
    if not shutil.which("lintian"):
        skip("lintian is not installed (tools/dev.sh package installs it)")
    r = run("lintian", "--fail-on", "error,warning", "--display-info", deb_path(arch))
    print(r.stdout, r.stderr)

    def clean():
        expect(r.returncode == 0, f"lintian exited {r.returncode}: an error or warning above")
        tags = [line for line in r.stdout.splitlines() if line[:2] in ("E:", "W:")]
        expect(not tags, "errors or warnings:\n" + "\n".join(tags))

    return run_checks([(f"lintian: no error or warning in the {arch} package", clean)])


def emulate(arch):
    need_deb(arch)
    qemu = shutil.which(QEMU[arch])
    if not qemu:
        skip(f"{QEMU[arch]} is not installed (Debian's qemu-user-static)")
    for lib in (f"/usr/lib/{TRIPLET[arch]}/libgpiod.so.2", f"/lib/{TRIPLET[arch]}/libc.so.6"):
        if not os.path.exists(lib):
            skip(f"no {lib}: the {arch} libraries are not installed (tools/dev.sh package installs them)")
    unpacked = tempfile.mkdtemp(prefix=f"meshrun-qemu-{arch}-")
    run("dpkg-deb", "-x", deb_path(arch), unpacked)
    exe = os.path.join(unpacked, "usr", "bin", "meshrun")
    topologies = os.path.join(unpacked, "usr", "share", "meshrun", "topologies")

    def meshrun(*args, timeout=120):
        # qemu-user-static, called directly: no binfmt registration needed.
        return run(qemu, exe, *args, timeout=timeout)

    def version_line():
        r = meshrun("--version")
        expect(r.returncode == 0 and r.stdout.startswith(f"meshrun {version()}"), f"--version: {r.stdout}{r.stderr}")
        print(r.stdout.strip())

    def check_all():
        files = sorted(os.path.join(topologies, f) for f in os.listdir(topologies) if f.endswith(".mesh"))
        expect(len(files) >= 4, f"only {files} packaged")
        r = meshrun("check", *files)
        expect(r.returncode == 0, f"check exited {r.returncode}: {r.stdout}{r.stderr}")
        said = (r.stdout + r.stderr).splitlines()
        expect(len(said) == len(files) and all(": ok: " in line for line in said), f"check said: {said}")

    def scenarios():
        r = meshrun("test", os.path.join(topologies, "arduino.mesh"), timeout=300)
        print(r.stdout[-2000:])
        expect(r.returncode == 0, f"test exited {r.returncode}: {r.stdout}{r.stderr}")
        expect(re.search(r"^[1-9]\d* passed, 0 failed$", r.stdout, re.M), f"test said: {r.stdout}")

    try:
        return run_checks([(f"{arch}: --version under {QEMU[arch]}", version_line),
                           (f"{arch}: check of every packaged topology", check_all),
                           (f"{arch}: test of arduino.mesh", scenarios)])
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def systemd_side():
    """The amd64 package's binary, which tells systemd through libsystemd's sd_notify: the cli
    tests of readiness and of the journal, run on it."""
    need_deb("amd64")
    unpacked = tempfile.mkdtemp(prefix="meshrun-notify-")
    try:
        run("dpkg-deb", "-x", deb_path("amd64"), unpacked)
        exe = os.path.join(unpacked, "usr", "bin", "meshrun")
        checks = []
        for test in ("notify_test.py", "journal_test.py"):
            script = os.path.join(ROOT, "tests", "cli", test)

            def passes(script=script):
                r = run(sys.executable, script, exe, timeout=300)
                print(r.stdout, r.stderr)
                expect(r.returncode == 0, f"{os.path.basename(script)} on the package's binary exited {r.returncode}")
            checks.append((f"{test} on the amd64 package's binary", passes))

        def backend():
            r = run(exe, "--version")
            expect("systemd: sd_notify from libsystemd " in r.stdout, f"--version: {r.stdout}")
        return run_checks([("it links libsystemd", backend)] + checks)
    finally:
        shutil.rmtree(unpacked, ignore_errors=True)


def fresh_root(into):
    """A Debian 12 root with systemd (as a Pi has), made by debootstrap once and kept in ROOT_CACHE."""
    if not os.path.exists(ROOT_CACHE):
        if os.geteuid() != 0:
            skip("debootstrap needs root")
        if not shutil.which("debootstrap"):
            skip("debootstrap is not installed (tools/dev.sh package installs it)")
        made = tempfile.mkdtemp(prefix="meshrun-debootstrap-")
        print(f"making a Debian 12 root with debootstrap into {made} (kept as {ROOT_CACHE})", flush=True)
        r = run("debootstrap", "--variant=minbase", f"--include={ROOT_INCLUDES}", "bookworm", made,
                "http://deb.debian.org/debian", timeout=1200)
        if r.returncode != 0:
            shutil.rmtree(made, ignore_errors=True)
            skip(f"debootstrap failed (no Debian mirror reachable?): {r.stdout[-500:]}{r.stderr[-500:]}")
        os.makedirs(os.path.dirname(ROOT_CACHE), exist_ok=True)
        expect(run("tar", "-C", made, "-cf", ROOT_CACHE + ".part", ".").returncode == 0, "tar of the root failed")
        os.rename(ROOT_CACHE + ".part", ROOT_CACHE)
        shutil.rmtree(made, ignore_errors=True)
    expect(run("tar", "-C", into, "-xf", ROOT_CACHE).returncode == 0, f"cannot unpack {ROOT_CACHE}")


def install():
    need_deb("amd64")
    if os.geteuid() != 0:
        skip("dpkg -i into a root needs root (chroot)")
    root = tempfile.mkdtemp(prefix="meshrun-root-")
    fresh_root(root)
    os.chmod(root, 0o755)  # as / is: the root's own users (man, meshrun) go through it
    shutil.copy(deb_path("amd64"), os.path.join(root, "tmp", "meshrun.deb"))

    def chroot(*cmd):
        return run("chroot", root, *cmd, timeout=300)

    def dpkg_i():
        r = chroot("dpkg", "-i", "/tmp/meshrun.deb")
        print(r.stdout[-1500:], r.stderr[-1500:])
        expect(r.returncode == 0, f"dpkg -i exited {r.returncode}")
        r = chroot("dpkg-query", "-W", "-f=${Status}", "meshrun")
        expect(r.stdout == "install ok installed", f"dpkg says: {r.stdout}")

    def user():
        r = chroot("id", "meshrun")
        expect(r.returncode == 0 and "(gpio)" in r.stdout, f"id meshrun: {r.stdout}{r.stderr}")
        passwd = chroot("getent", "passwd", "meshrun").stdout
        expect("/var/lib/meshrun" in passwd and "nologin" in passwd, f"passwd entry: {passwd}")
        r = chroot("stat", "-c", "%U:%G %a", "/var/lib/meshrun")
        expect(r.stdout.strip() == "meshrun:meshrun 750", f"/var/lib/meshrun: {r.stdout}{r.stderr}")

    def check():
        r = chroot("meshrun", "check", "/usr/share/meshrun/topologies/arduino.mesh")
        expect(r.returncode == 0, f"meshrun check in the root exited {r.returncode}: {r.stdout}{r.stderr}")
        r = chroot("man", "-w", "meshrun")
        expect(r.returncode == 0 and r.stdout.strip() == "/usr/share/man/man1/meshrun.1.gz", f"man -w: {r.stdout}{r.stderr}")

    def verify():
        # A fleet file where the unit reads it, then systemd's own check of an instance.
        os.makedirs(os.path.join(root, "etc", "meshrun"), exist_ok=True)
        shutil.copy(os.path.join(ROOT, "topologies", "arduino.mesh"), os.path.join(root, "etc", "meshrun", "fleet.mesh"))
        r = chroot("systemd-analyze", "verify", "meshrun@buzzer.service")
        print(r.stdout, r.stderr)
        expect(r.returncode == 0, f"systemd-analyze verify exited {r.returncode}")
        expect("meshrun@" not in r.stderr, f"systemd-analyze complains of the unit: {r.stderr}")

    def remove():
        # An instance enabled, as `systemctl enable meshrun@buzzer` leaves it.
        wants = os.path.join(root, "etc", "systemd", "system", "multi-user.target.wants")
        os.makedirs(wants, exist_ok=True)
        os.symlink("/lib/systemd/system/meshrun@.service", os.path.join(wants, "meshrun@buzzer.service"))
        r = chroot("dpkg", "--purge", "meshrun")
        expect(r.returncode == 0, f"dpkg --purge exited {r.returncode}: {r.stdout}{r.stderr}")
        for left in ("usr/bin/meshrun", "var/lib/meshrun", "etc/systemd/system/multi-user.target.wants/meshrun@buzzer.service"):
            expect(not os.path.lexists(os.path.join(root, left)), f"{left} left behind")

    def persons_account():
        chroot("userdel", "meshrun")
        expect(chroot("useradd", "-m", "-u", "1200", "-s", "/bin/bash", "meshrun").returncode == 0, "useradd failed")
        r = chroot("dpkg", "-i", "/tmp/meshrun.deb")
        expect(r.returncode != 0, f"dpkg -i took over a person's account meshrun:\n{r.stdout}{r.stderr}")
        expect("the user meshrun exists and is not a system user (uid 1200)" in r.stderr, f"dpkg -i said:\n{r.stderr}")
        groups = chroot("id", "-nG", "meshrun").stdout.split()
        expect("gpio" not in groups, f"the account was put in gpio: {groups}")

    try:
        return run_checks([("dpkg -i into a fresh Debian 12 root", dpkg_i), ("the user meshrun, in group gpio", user),
                           ("meshrun check from the root", check), ("systemd-analyze verify meshrun@buzzer", verify),
                           ("dpkg --purge", remove), ("a person's account meshrun is not taken over", persons_account)])
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    mode = sys.argv[1] if len(sys.argv) > 1 else ""
    modes = {"build": build, "lint": lint, "emulate": emulate}
    if mode in ("install", "systemd"):
        sys.exit(1 if (install() if mode == "install" else systemd_side()) else 0)
    if mode not in modes or len(sys.argv) != 3 or sys.argv[2] not in TRIPLET:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(1 if modes[mode](sys.argv[2]) else 0)
