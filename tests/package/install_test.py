"""`cmake --install` of a build into a temporary root with the prefix /usr (docs/install.md):
exactly the expected files; the installed binary runs `--version` and checks every installed
topology; meshrun(1) renders with `man -l` and lints clean (groff, and mandoc when installed);
every command and long option of `meshrun --help` is in the rendered man page and is completed
by the installed bash completion.

    install_test.py CMAKE BUILD_DIR SOURCE_DIR SYSTEMD_UNITDIR SYSUSERSDIR
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from checks import expect, run_checks  # noqa: E402

cmake, build, source, unitdir, sysusersdir = sys.argv[1:6]
root = tempfile.mkdtemp(prefix="meshrun-install-")
binary = os.path.join(root, "usr/bin/meshrun")
man_page = os.path.join(root, "usr/share/man/man1/meshrun.1")
bash_completion = os.path.join(root, "usr/share/bash-completion/completions/meshrun")


def under_prefix(path):
    return path.lstrip("/") if os.path.isabs(path) else os.path.join("usr", path)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=60, **kw)


def installed_files():
    found = set()
    for dirpath, _, files in os.walk(root):
        found.update(os.path.relpath(os.path.join(dirpath, f), root) for f in files)
    return found


def source_files(directory, suffix):
    """The files of SOURCE/directory ending in suffix, relative to it."""
    top = os.path.join(source, directory)
    return {os.path.relpath(os.path.join(d, f), top) for d, _, files in os.walk(top) for f in files if f.endswith(suffix)}


def commands_and_options():
    """{command: [long options]} from the installed binary's --help, read plainly (not through
    tools/manpage.py, which made what is checked here)."""
    top = run([binary, "--help"]).stdout
    commands = re.findall(r"^  ([a-z]+) ", top.split("\nSubcommands:\n", 1)[1].split("\n\n", 1)[0], re.M)
    expect(len(commands) >= 7, f"--help lists only {commands}")
    options = {}
    for command in commands:
        text = run([binary, command, "--help"]).stdout
        options[command] = re.findall(r"^  (?:-\w,)?(--[a-z][a-z-]*)", text, re.M)
        expect(options[command], f"`meshrun {command} --help` shows no option")
    return options


def check_install():
    proc = run([cmake, "--install", build, "--prefix", "/usr"], env=dict(os.environ, DESTDIR=root))
    expect(proc.returncode == 0, f"cmake --install exited {proc.returncode}: {proc.stderr}")


def check_layout():
    expected = {"usr/bin/meshrun", "usr/share/man/man1/meshrun.1", "usr/share/bash-completion/completions/meshrun",
                "usr/share/doc/meshrun/README.md",
                under_prefix(os.path.join(unitdir, "meshrun@.service")),
                under_prefix(os.path.join(sysusersdir, "meshrun.conf"))}
    expected |= {"usr/share/doc/meshrun/docs/" + f for f in source_files("docs", ".md")}
    expected |= {"usr/share/meshrun/topologies/" + f for f in source_files("topologies", ".mesh")}
    expect("usr/share/meshrun/topologies/fleet/docks.mesh" in expected, "no topologies/fleet/docks.mesh in the sources")
    expect("usr/share/doc/meshrun/docs/install.md" in expected, "no docs/install.md in the sources")
    found = installed_files()
    expect(found == expected, f"missing: {sorted(expected - found)}; not expected: {sorted(found - expected)}")
    expect(os.access(binary, os.X_OK), "usr/bin/meshrun is not executable")
    unit = open(os.path.join(root, under_prefix(unitdir), "meshrun@.service")).read()
    expect("\nExecStart=/usr/bin/meshrun run /etc/meshrun/fleet.mesh --node %i " in unit,
           "the unit's ExecStart does not run /usr/bin/meshrun")
    expect(not re.search(r"@[A-Z_]+@", unit), "a placeholder left in the unit")


def check_binary():
    proc = run([binary, "--version"])
    expect(proc.returncode == 0 and proc.stdout.startswith("meshrun "), f"--version: {proc.returncode} {proc.stdout!r}")
    topologies = os.path.join(root, "usr/share/meshrun/topologies")
    files = sorted(os.path.join(topologies, f) for f in os.listdir(topologies) if f.endswith(".mesh"))
    expect(len(files) >= 4, f"only {files} installed")
    for path in files:  # fleet.mesh includes fleet/*.mesh: checked through it, from the installed copy
        proc = run([binary, "check", "--werror", path])
        expect(proc.returncode == 0, f"check {path}: {proc.returncode}\n{proc.stdout}{proc.stderr}")


def rendered_man_page():
    proc = run(["man", "-l", man_page], env=dict(os.environ, MANWIDTH="100", MANPAGER="cat", LC_ALL="C.UTF-8"))
    expect(proc.returncode == 0, f"man -l: {proc.returncode} {proc.stderr}")
    expect(not proc.stderr.strip(), f"man -l warns: {proc.stderr}")
    return re.sub(r".\x08", "", proc.stdout)  # overstrikes, should man keep them


def check_man_renders():
    text = rendered_man_page()
    for section in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "COMMANDS", "EXIT STATUS", "FILES", "SEE ALSO"):
        expect(re.search(rf"^{section}$", text, re.M), f"no section {section} in the rendered page")
    expect(re.search(r"^ +meshrun - ", text, re.M), "NAME is not `meshrun - ...`")
    expect("/etc/meshrun/fleet.mesh" in text and "meshrun@.service" in text, "FILES names neither the fleet file nor the unit")


def check_man_lint():
    proc = run(["groff", "-man", "-ww", "-z", man_page])
    expect(proc.returncode == 0 and not proc.stderr.strip(), f"groff -man -ww -z: {proc.stderr}")
    if shutil.which("mandoc"):
        proc = run(["mandoc", "-T", "lint", "-W", "warning", man_page])
        expect(proc.returncode == 0 and not proc.stdout.strip(), f"mandoc -T lint: {proc.stdout}{proc.stderr}")
    else:
        print("note: mandoc not installed: its lint not run (apt package mandoc)")


def check_man_has_everything():
    text = rendered_man_page()
    missing = []
    for command, options in commands_and_options().items():
        # Each command's heading (an indented line of its own name), its synopsis, every option.
        if not re.search(rf"^ +{command}$", text, re.M) or f"meshrun {command} " not in text:
            missing.append(command)
        section = text.split(f"\n   {command}\n", 1)[-1]
        missing += [f"{command} {o}" for o in options if not re.search(rf"(^|[ ,]){o}\b", section, re.M)]
    expect(not missing, f"not in the man page: {missing}")


def completions(*words):
    script = (f'source "{bash_completion}"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _meshrun; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    proc = run(["bash", "-c", script, "bash", *words])
    expect(proc.returncode == 0 and not proc.stderr, f"completing {words}: {proc.stderr}")
    return set(proc.stdout.split())


def check_completion_has_everything():
    options = commands_and_options()
    got = completions("meshrun", "")
    expect(got == set(options), f"`meshrun <TAB>` gives {sorted(got)}, --help lists {sorted(options)}")
    missing = []
    for command, longs in options.items():
        got = completions("meshrun", command, "--")
        missing += [f"{command} {o}" for o in longs if o not in got]
    expect(not missing, f"not completed: {missing}")


try:
    failed = run_checks([
        ("cmake --install --prefix /usr into a temporary root", check_install),
        ("the installed files, exactly; the unit runs /usr/bin/meshrun", check_layout),
        ("the installed binary: --version, check --werror of every installed topology", check_binary),
        ("man -l renders meshrun(1) with its sections", check_man_renders),
        ("groff -ww (and mandoc) lint clean", check_man_lint),
        ("every command and long option of --help in the man page", check_man_has_everything),
        ("every command and long option of --help completed", check_completion_has_everything),
    ])
finally:
    shutil.rmtree(root, ignore_errors=True)
sys.exit(1 if failed else 0)
