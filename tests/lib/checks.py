"""What the Python tests that drive the meshrun binary share: bounded waits on loopback, and
checks that report `ok NAME` or `FAIL NAME: why` each, then `N passed, M failed`.

    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
    from checks import HOST, STEP, CheckFailed, expect, free_port, run_checks, wait_for_port
"""

import socket
import sys
import time
import traceback

STEP = 10.0  # the bound on any single wait, in seconds
HOST = "127.0.0.1"


class CheckFailed(Exception):
    pass


def expect(cond, message):
    if not cond:
        raise CheckFailed(message)


def sanitized(pid):
    """Whether process `pid` runs with AddressSanitizer (tests/sanitize/): its shadow memory and
    quarantine of freed blocks make the resident size say nothing of what the program holds."""
    try:
        with open(f"/proc/{pid}/maps") as f:
            return "libasan" in f.read()
    except OSError:
        return False


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def wait_for(what, cond, timeout):
    """The first true value of cond() within `timeout` s, or a failure that says what was awaited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise CheckFailed(f"{what}: not within {timeout} s")


def wait_for_port(port, proc, timeout=STEP):
    """Whether `port` takes connections before `proc` ends or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


def run_checks(checks):
    """Runs each (name, thunk) in turn; a failure is reported and the next check runs. Prints
    the closing line and returns the number of failures."""
    passed = failed = 0
    for name, thunk in checks:
        started = time.monotonic()
        try:
            thunk()
            passed += 1
            print(f"ok    {name} ({time.monotonic() - started:.1f} s)", flush=True)
        except CheckFailed as e:
            failed += 1
            print(f"FAIL  {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - an unexpected error is a failed check, with its trace
            failed += 1
            print(f"FAIL  {name}: {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
    print(f"{passed} passed, {failed} failed")
    return failed
