#!/usr/bin/python3
"""TLS and authentication between real `meshrun run` nodes (docs/delivery.md, `tls` and `secret`):
links over wss with mutual TLS, clients with and without a certificate the fleet's authority signed,
strangers and plain clients refused, a peer whose certificate names another host, the system's
authorities without `ca`, the files a node cannot use, and the fleet's token over TLS.

    /usr/bin/python3 tests/wire/tls_test.py path/to/meshrun

Certificates are made by tests/lib/make_certs.sh (the openssl command) into a temporary directory;
without openssl the test is skipped (exit 77). Nodes listen on loopback ports 28000-30999. Prints
one line per check and `N passed, M failed` last; exits 1 on any failure.
"""

import asyncio
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

import websockets
import websockets.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
from checks import HOST, STEP, CheckFailed, expect, run_checks  # noqa: E402
from nodes import Node, write_mesh  # noqa: E402

SKIP = 77
TRIES = 5  # how many times each refused client tries
MESHRUN = ""  # the binary, set in main()
CERTS = ""  # the directory make_certs.sh filled, set in main()

# The files of a tls item, relative to the directory a node runs in.
MUTUAL = 'tls cert "node.pem" key "node.key" ca "ca.pem"\n'
SYSTEM_TRUST = 'tls cert "node.pem" key "node.key"\n'

# A client fails to connect with one of these; a timeout is not a refusal.
REFUSALS = (ssl.SSLError, OSError, EOFError, websockets.exceptions.InvalidHandshake,
            websockets.exceptions.ConnectionClosed)

_ports_taken = set()


def port():
    """A free loopback port in 28000-30999, not handed out before in this run."""
    for _ in range(200):
        p = random.randint(28000, 30999)
        if p in _ports_taken:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((HOST, p))
            except OSError:
                continue
        _ports_taken.add(p)
        return p
    raise CheckFailed("no free port in 28000-30999")


def cert(name):
    return os.path.join(CERTS, name)


def identity_dir(pem, key):
    """A directory in which `node.pem`, `node.key` and `ca.pem` are the given certificate and key
    and the fleet's authority: a node run there with the MUTUAL item shows that certificate."""
    d = tempfile.mkdtemp(prefix="meshrun-tls-id-")
    shutil.copy(cert(pem), os.path.join(d, "node.pem"))
    shutil.copy(cert(key), os.path.join(d, "node.key"))
    shutil.copy(cert("ca.pem"), os.path.join(d, "ca.pem"))
    return d


def start(mesh, node, p, cwd=None, args=("--sim",), env=None, wait=True):
    """`meshrun run` in `cwd` (the tls item's files are relative to it); waits for its port."""
    before = os.getcwd()
    os.chdir(cwd or CERTS)
    try:
        n = Node(MESHRUN, mesh, node, args=list(args), env=env)
    finally:
        os.chdir(before)
    if wait:
        n.wait_for_line(f":{p}", STEP)
    return n


def context(pem=None, key=None, ca="ca.pem", tls12=False):
    """A client's TLS context: trusting `ca`, showing `pem`/`key` when given."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cert(ca))
    if pem:
        ctx.load_cert_chain(cert(pem), cert(key))
    if tls12:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


async def wss_ask(p, channel, message, ctx, headers=None, timeout=STEP):
    async with websockets.connect(f"wss://{HOST}:{p}/{channel}", ssl=ctx, extra_headers=headers or {},
                                  open_timeout=timeout) as ws:
        await ws.send(message)
        return await asyncio.wait_for(ws.recv(), timeout)


def ask(p, channel, message, ctx, headers=None):
    return asyncio.run(wss_ask(p, channel, message, ctx, headers))


def refused(p, channel, ctx, scheme="wss"):
    """The exception a client gets trying to talk to the node; a failed check if it is served, or if
    the node leaves it waiting rather than refusing it."""
    async def attempt():
        kwargs = {"ssl": ctx} if scheme == "wss" else {}
        async with websockets.connect(f"{scheme}://{HOST}:{p}/{channel}", open_timeout=STEP, **kwargs) as ws:
            await ws.send("x")
            return await asyncio.wait_for(ws.recv(), STEP)
    try:
        reply = asyncio.run(attempt())
    except asyncio.TimeoutError as e:
        raise CheckFailed(f"{scheme}:// client with {ctx}: no refusal within {STEP} s, a timeout") from e
    except ssl.SSLCertVerificationError as e:
        raise CheckFailed(f"the client could not check the node's certificate, so the node refused nothing: {e}") from e
    except REFUSALS as e:
        return e
    raise CheckFailed(f"a {scheme}:// client that should be refused was served: reply {reply!r}")


def https_get(p, path, ctx, token=None, scheme="https"):
    """(status, body) of GET path."""
    request = urllib.request.Request(f"{scheme}://{HOST}:{p}{path}")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=STEP, context=ctx) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


class Pending:
    """A message to a node's channel from a thread of its own, for a firing that waits for a
    peer: `result` is the reply, or the exception, once there is one."""

    def __init__(self, p, channel, message, timeout=STEP):
        self.result = None
        self.thread = threading.Thread(target=self.run, args=(p, channel, message, timeout), daemon=True)
        self.thread.start()

    def run(self, p, channel, message, timeout):
        try:
            self.result = asyncio.run(wss_ask(p, channel, message, context("node.pem", "node.key"), timeout=timeout))
        except Exception as e:  # noqa: BLE001 - the result the check looks at
            self.result = e

    def wait(self):
        self.thread.join(5 * STEP)
        return self.result


def counter(metrics_port, name="meshrun_unauthorized_total"):
    """A node's counter `name`, from its --metrics port (plain HTTP)."""
    text = https_get(metrics_port, "/metrics", None, scheme="http")[1]
    for line in text.splitlines():
        if line.startswith(name + "{"):
            return int(line.rsplit(" ", 1)[1])
    raise CheckFailed(f"no {name} in:\n{text}")


def metric(text, name):
    """The lines of the Prometheus text `text` for `name`, for a failure's message."""
    return "".join(line for line in text.splitlines(True) if line.startswith(name)) or f"(no {name})"


def two_nodes(tls_item, pa, pb, extra=""):
    return write_mesh(f"""{tls_item}{extra}
node a at {HOST}:{pa} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at {HOST}:{pb} {{ on in -> {{ log "b got {{value}}"; ack "got {{value}}" }} }}
""")


def one_node(tls_item, p, extra=""):
    return write_mesh(f"""{tls_item}{extra}
node b at {HOST}:{p} {{ on in -> {{ log "b got {{value}}"; ack "got {{value}}" }} }}
""")


def check_mutual_link():
    """Two nodes with mutual TLS, the files relative to the directory they run in: a message to a
    goes to b over wss and is acknowledged."""
    pa, pb = port(), port()
    mesh = two_nodes(MUTUAL, pa, pb)
    b = start(mesh, "b", pb)
    a = start(mesh, "a", pa)
    try:
        expect(f"listening on wss://{HOST}:{pa}" in a.log(), f"a's log:\n{a.log()}")
        expect(f"listening on wss://{HOST}:{pb}" in b.log(), f"b's log:\n{b.log()}")
        reply = ask(pa, "go", "hello", context("node.pem", "node.key"))
        expect(reply == "sent", f"a's reply: {reply!r}")
        b.wait_for_line("b got hello", STEP)
        a.wait_for_line("< got hello", STEP)
        expect("refused" not in b.log(), f"b refused something:\n{b.log()}")
    finally:
        a.stop()
        b.stop()


def check_client_certificate():
    """A client with a certificate the authority signed is served; one without is refused every
    time, in the TLS handshake (TLS 1.2) or right after it (TLS 1.3), logged once with its address,
    and counted, on the node's https port and on --metrics."""
    p, pm = port(), port()
    mesh = one_node(MUTUAL, p)
    b = start(mesh, "b", p, args=["--sim", "--metrics", str(pm)])
    try:
        good = context("node.pem", "node.key")
        expect(ask(p, "in", "one", good) == "got one", "a client with a certificate is not served")
        errors = [refused(p, "in", context()) for _ in range(TRIES)]
        # TLS 1.2: the server asks for the certificate before the handshake ends, so the handshake fails.
        e = refused(p, "in", context(tls12=True))
        expect(isinstance(e, ssl.SSLError), f"TLS 1.2 without a certificate: {type(e).__name__}: {e}")
        errors.append(e)
        log = b.log()
        lines = [line for line in log.splitlines() if "refused a connection from" in line]
        expect(len(lines) >= 1 and f"from {HOST}:" in lines[0] and "TLS handshake" in lines[0],
               f"the refusal is not logged with the peer's address:\n{log}")
        # The TLS 1.3 refusals share one reason, TLS 1.2's may have its own: 2 lines at most.
        expect(len(lines) <= 2, f"{len(lines)} lines for {TRIES + 1} refusals, not once then summarised:\n{log}")
        status, text = https_get(p, "/metrics", good)
        expect(status == 200, f"GET /metrics over https with a client certificate: HTTP {status}")
        expect(f'meshrun_unauthorized_total{{node="b"}} {TRIES + 1}\n' in text,
               f"after {TRIES + 1} refusals: {metric(text, 'meshrun_unauthorized_total')}")
        status, text = https_get(pm, "/metrics", None, scheme="http")
        expect(status == 200 and f'meshrun_unauthorized_total{{node="b"}} {TRIES + 1}\n' in text,
               f"--metrics: HTTP {status}, {metric(text, 'meshrun_unauthorized_total')}")
        expect(ask(p, "in", "two", good) == "got two", "the node does not serve after the refusals")
        expect(b.proc.poll() is None, f"the node ended:\n{b.log()}")
    finally:
        b.stop()


def check_strangers():
    """A client whose certificate another authority signed is refused every time; a plain ws://
    client and a plain HTTP request to the TLS port are refused, and the node serves on."""
    p = port()
    mesh = one_node(MUTUAL, p)
    b = start(mesh, "b", p)
    try:
        for _ in range(TRIES):
            refused(p, "in", context("other.pem", "other.key"))
        # The stranger's own authority trusted too: still refused, for what signed its certificate.
        stranger = context("other.pem", "other.key")
        stranger.load_verify_locations(cert("other-ca.pem"))
        refused(p, "in", stranger)
        for _ in range(TRIES):
            refused(p, "in", None, scheme="ws")
        with socket.create_connection((HOST, p), timeout=STEP) as s:
            s.settimeout(STEP)
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            answer = s.recv(200)
        expect(answer.startswith(b"HTTP/1.1 400") and b"use https:// or wss://" in answer,
               f"plain HTTP to the TLS port: {answer!r}")
        log = b.log()
        expect(b.proc.poll() is None, f"the node ended:\n{log}")
        expect(ask(p, "in", "still", context("node.pem", "node.key")) == "got still",
               f"the node does not serve after strangers:\n{log}")
        lines = [line for line in log.splitlines() if "refused a connection from" in line]
        expect(1 <= len(lines) <= 4, f"{len(lines)} log lines for {TRIES + 1} refusals:\n{log}")
        # Strangers are counted; plain clients, answered 400 or dropped, are not: they showed no identity.
        status, text = https_get(p, "/metrics", context("node.pem", "node.key"))
        expect(f'meshrun_unauthorized_total{{node="b"}} {TRIES + 1}\n' in text,
               f"after {TRIES + 1} strangers: {metric(text, 'meshrun_unauthorized_total')}")
    finally:
        b.stop()


def check_wrong_name():
    """A peer whose certificate names another host is refused by the link, which says why and
    retries with backoff, not spinning; once the peer has the right certificate the message held
    is delivered."""
    pa, pb, pm = port(), port(), port()
    mesh = two_nodes(MUTUAL, pa, pb)
    wrong = identity_dir("wrong-name.pem", "wrong-name.key")
    b = start(mesh, "b", pb, cwd=wrong, args=["--sim", "--metrics", str(pm)])
    a = start(mesh, "a", pa, args=["--sim", "--grace", "0"])
    sender = Pending(pa, "go", "held", timeout=4 * STEP)
    try:
        a.wait_for_line("IP address mismatch", STEP)
        log = a.log()
        expect("b/in" in log and "certificate verify failed" in log, f"a's log does not say why:\n{log}")
        time.sleep(1)  # past the first, short waits of the backoff
        cpu, tries = a.cpu_seconds(), counter(pm, "meshrun_connections_total")
        time.sleep(2)
        spent, tried = a.cpu_seconds() - cpu, counter(pm, "meshrun_connections_total") - tries
        expect(spent < 0.2, f"a spent {spent:.2f} s of CPU in 2 s while retrying: a spin")
        # Each attempt of a's is a connection b counts; pauses of 0.4 s to 2 s by now.
        expect(1 <= tried <= 8, f"a tried {tried} times in 2 s (from b's meshrun_connections_total)")
        # b says that a refused its certificate, not that it refused a client.
        expect("refused this node's certificate" in b.log() and "refused a connection" not in b.log(),
               f"b's log of a's refusal:\n{b.log()}")
        expect(a.log().count("IP address mismatch") == 1, f"the failure is logged on every retry:\n{a.log()}")
        expect("b got" not in b.log(), f"b fired with the wrong certificate:\n{b.log()}")
        expect(sender.result is None, f"a replied before b could take the message: {sender.result!r}")
        b.stop()
        b = start(mesh, "b", pb)
        b.wait_for_line("b got held", 3 * STEP)
        expect(sender.wait() == "sent", f"a's reply: {sender.result!r}")
        expect("connected to b/in again after" in a.log(), f"a does not say the link is back:\n{a.log()}")
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(wrong, ignore_errors=True)


def check_wrong_name_by_name():
    """The same with the peer's host given as a name (`localhost`): the log says hostname mismatch."""
    pa, pb = port(), port()
    mesh = write_mesh(f"""{MUTUAL}
node a at {HOST}:{pa} {{ on go -> {{ send value to b/in; ack "sent" }} }}
node b at localhost:{pb} {{ on in -> {{ log "b got {{value}}"; ack "got {{value}}" }} }}
""")
    wrong = identity_dir("wrong-name.pem", "wrong-name.key")
    b = start(mesh, "b", pb, cwd=wrong)
    a = start(mesh, "a", pa, args=["--sim", "--grace", "0"])
    try:
        Pending(pa, "go", "x")
        a.wait_for_line("certificate verify failed: hostname mismatch", STEP)
    finally:
        a.stop()
        b.stop()
        shutil.rmtree(wrong, ignore_errors=True)


def check_system_trust():
    """Without `ca`, a node serves wss to a client that trusts its authority and shows no
    certificate. Its links check peers against the system's authorities: the test's is not one of
    them, and the link says so; with SSL_CERT_FILE naming it (OpenSSL's own variable), it is."""
    pa, pb = port(), port()
    mesh = two_nodes(SYSTEM_TRUST, pa, pb)
    b = start(mesh, "b", pb)
    a = start(mesh, "a", pa, args=["--sim", "--grace", "0"])
    try:
        expect(f"listening on wss://{HOST}:{pb}" in b.log(), f"b's log:\n{b.log()}")
        expect(ask(pb, "in", "anonymous", context()) == "got anonymous", "a client without a certificate is not served")
        status, text = https_get(pb, "/healthz", context())
        expect(status == 200 and '"status":"serving"' in text, f"/healthz over https: HTTP {status} {text}")
        Pending(pa, "go", "x")
        a.wait_for_line("certificate verify failed", STEP)
        log = a.log()
        expect("unable to get local issuer certificate" in log and "b/in" in log,
               f"a's log does not say which certificate was not trusted:\n{log}")
        expect("b got x" not in b.log(), f"b fired though a could not check it:\n{b.log()}")
    finally:
        a.stop()
        b.stop()
    pa, pb = port(), port()
    mesh = two_nodes(SYSTEM_TRUST, pa, pb)
    trusted = {"SSL_CERT_FILE": cert("ca.pem")}
    b = start(mesh, "b", pb, env=trusted)
    a = start(mesh, "a", pa, env=trusted)
    try:
        expect(ask(pa, "go", "trusted", context()) == "sent", "a's reply")
        b.wait_for_line("b got trusted", STEP)
    finally:
        a.stop()
        b.stop()


def check_bad_files():
    """A certificate, key or authority that cannot be used: `meshrun run` exits 1 at start with a
    message that names the file."""
    d = tempfile.mkdtemp(prefix="meshrun-tls-bad-")
    try:
        os.mkdir(os.path.join(d, "a-directory.pem"))
        with open(os.path.join(d, "empty.pem"), "w"):
            pass
        with open(os.path.join(d, "text.pem"), "w") as f:
            f.write("hello\n")
        unreadable = os.path.join(d, "unreadable.key")
        shutil.copy(cert("node.key"), unreadable)
        os.chmod(unreadable, 0)
        cases = [
            ("node.pem", os.path.join(d, "missing.pem"), "ca.pem", "missing.pem", "No such file"),
            ("node.pem", os.path.join(d, "missing.key"), "ca.pem", "missing.key", "No such file"),
            ("node.pem", "node.key", os.path.join(d, "missing-ca.pem"), "missing-ca.pem", "No such file"),
            (os.path.join(d, "a-directory.pem"), "node.key", "ca.pem", "a-directory.pem", "directory"),
            (os.path.join(d, "empty.pem"), "node.key", "ca.pem", "empty.pem", ""),
            (os.path.join(d, "text.pem"), "node.key", "ca.pem", "text.pem", "not a PEM"),
            ("node.pem", os.path.join(d, "text.pem"), "ca.pem", "text.pem", "not a PEM"),
            ("node.pem", "node.key", os.path.join(d, "text.pem"), "text.pem", "not a PEM"),
            ("node.key", "node.key", "ca.pem", "node.key", "certificate"),  # a key given as the certificate
            ("node.pem", "other.key", "ca.pem", "other.key", "does not match"),
            ("node.pem", "ed25519.key", "ca.pem", "ed25519.key", "does not match"),
            ("node.pem", "encrypted.key", "ca.pem", "encrypted.key", "encrypted"),
        ]
        if os.geteuid() != 0:  # root reads a file whatever its mode
            cases.append(("node.pem", unreadable, "ca.pem", "unreadable.key", "Permission denied"))
        failures = []
        for pem, key, ca, named, says in cases:
            p = port()
            mesh = one_node(f'tls cert "{pem}" key "{key}" ca "{ca}"\n', p)
            try:
                r = subprocess.run([MESHRUN, "run", mesh, "--node", "b", "--sim", "--color", "never"], cwd=CERTS,
                                   capture_output=True, text=True, timeout=STEP)
            except subprocess.TimeoutExpired:
                failures.append(f"cert {pem} key {key} ca {ca}: still running after {STEP} s")
                continue
            out = r.stdout + r.stderr
            if r.returncode != 1 or named not in out or says not in out or "listening" in out:
                failures.append(f"cert {pem} key {key} ca {ca}: exit {r.returncode}, output {out.strip()!r}"
                                f" (wanted exit 1 naming {named!r}, saying {says!r})")
        expect(not failures, "\n  " + "\n  ".join(failures))
    finally:
        os.chmod(unreadable, 0o600)
        shutil.rmtree(d, ignore_errors=True)


def check_secret_over_tls():
    """`secret env VAR` with mutual TLS: a wss client without the token is answered 401, with it
    served; /healthz needs no token; the nodes' own link carries the token over TLS."""
    pa, pb = port(), port()
    mesh = two_nodes(MUTUAL, pa, pb, extra="secret env TLS_TEST_TOKEN\n")
    token = "tls-and-a-token"
    env = {"TLS_TEST_TOKEN": token}
    b = start(mesh, "b", pb, env=env)
    a = start(mesh, "a", pa, env=env)
    good = context("node.pem", "node.key")
    bearer = {"Authorization": f"Bearer {token}"}
    try:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            try:
                ask(pb, "in", "x", good, headers)
                raise CheckFailed(f"a wss client with {headers or 'no token'} was served")
            except websockets.exceptions.InvalidStatusCode as e:
                expect(e.status_code == 401, f"a wss client with {headers or 'no token'}: HTTP {e.status_code}")
        expect(ask(pb, "in", "with", good, bearer) == "got with", "a wss client with the token")
        status, text = https_get(pb, "/healthz", good)
        expect(status == 200 and '"status":"serving"' in text, f"/healthz over https without the token: HTTP {status}")
        expect(https_get(pb, "/", good)[0] == 401, "GET / over https without the token is not 401")
        expect(https_get(pb, "/", good, token)[0] == 200, "GET / over https with the token is not 200")
        expect(ask(pa, "go", "linked", good, bearer) == "sent", "a's reply")
        b.wait_for_line("b got linked", STEP)
        log = b.log()
        expect("HTTP 401" in log and f"from {HOST}:" in log, f"b does not log the refusals:\n{log}")
        status, text = https_get(pb, "/metrics", good, token)
        expect('meshrun_unauthorized_total{node="b"} 3\n' in text,
               f"2 websockets and GET /: {metric(text, 'meshrun_unauthorized_total')}")
    finally:
        a.stop()
        b.stop()


def main():
    global CERTS, MESHRUN
    MESHRUN = os.path.abspath(sys.argv[1])
    if shutil.which("openssl") is None:
        print("meshrun-test-skipped: the openssl command is not installed (Debian's openssl package)")
        return SKIP
    # The system's authorities as OpenSSL finds them, not as this environment may say.
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR"):
        os.environ.pop(name, None)
    CERTS = tempfile.mkdtemp(prefix="meshrun-tls-certs-")
    try:
        subprocess.run(["bash", os.path.join(HERE, "..", "lib", "make_certs.sh"), CERTS], check=True, timeout=60)
        checks = [
            ("mutual_link", check_mutual_link),
            ("client_certificate", check_client_certificate),
            ("strangers", check_strangers),
            ("wrong_name", check_wrong_name),
            ("wrong_name_by_name", check_wrong_name_by_name),
            ("system_trust", check_system_trust),
            ("bad_files", check_bad_files),
            ("secret_over_tls", check_secret_over_tls),
        ]
        return 1 if run_checks(checks) else 0
    finally:
        shutil.rmtree(CERTS, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
