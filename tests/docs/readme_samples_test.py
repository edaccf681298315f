#!/usr/bin/python3
"""The README's sample of `meshrun up` is what a real run prints.

    /usr/bin/python3 tests/docs/readme_samples_test.py path/to/meshrun path/to/README.md

Runs the sample's command from the repository's root and checks that the sample's lines appear in the
real output in the same order, the lines between two `...` (lines left out) one after the other.
Prints `N passed, M failed` last; exits 1 on a mismatch.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time

STEP = 20.0


def samples(readme):
    """The fenced blocks that start with `$ meshrun up`: (command, runs of lines). A `...` line stands
    for lines left out; the lines between two of them are printed one after the other."""
    for command, body in re.findall(r"```\n(\$ meshrun up [^\n]*)\n(.*?)```", readme, re.S):
        runs = [[]]
        for line in body.splitlines():
            if line == "...":
                runs.append([])
            else:
                runs[-1].append(line)
        yield command[2:], [run for run in runs if run]


def find_run(out, run, start):
    """Where `run` stands in `out` as consecutive lines, at `start` or later; -1 when nowhere."""
    for i in range(start, len(out) - len(run) + 1):
        if out[i:i + len(run)] == run:
            return i
    return -1


def run(meshrun, root, command, last_line):
    """Runs the command until it has printed `last_line` and then nothing for 1.5 s; its output."""
    args = command.split()[1:] + ["--color", "never"]
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen([meshrun, *args], cwd=root, stdout=out, stderr=subprocess.STDOUT, text=True)
        seen, quiet_since, deadline = "", time.monotonic(), time.monotonic() + STEP
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
            # Through a file of its own: a seek on `out` would move the child's offset too.
            with open(f"/proc/self/fd/{out.fileno()}") as view:
                now = view.read()
            if now != seen:
                seen, quiet_since = now, time.monotonic()
            elif last_line in seen.splitlines() and time.monotonic() - quiet_since > 1.5:
                break
        proc.send_signal(signal.SIGINT)
        proc.wait(STEP)
        out.seek(0)
        return out.read().splitlines()


def main():
    meshrun, readme_path = os.path.abspath(sys.argv[1]), sys.argv[2]
    root = os.path.dirname(os.path.abspath(readme_path))
    passed = failed = 0
    for command, runs in samples(open(readme_path).read()):
        out = run(meshrun, root, command, runs[-1][-1])
        at, missing = 0, None
        for lines in runs:
            found = find_run(out, lines, at)
            if found < 0:
                missing = lines
                break
            at = found + len(lines)
        if missing is None:
            passed += 1
            print(f"ok    {command}")
        else:
            failed += 1
            print(f"FAIL  {command}: these lines, one after the other, are not in the output after line {at}:")
            print("\n".join("    " + line for line in missing))
            print("the output:\n" + "\n".join(out))
    if passed + failed == 0:
        print("FAIL  no `$ meshrun up` sample found in the README")
        failed = 1
    print(f"{passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
