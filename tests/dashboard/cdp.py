"""A small client of the Chrome DevTools Protocol, enough for the dashboard's browser tests: Debian's
chromium, headless, with a fresh profile, driven over its DevTools websocket (python3-websockets,
asyncio, on a thread of its own so that the tests stay plain sequential code).

    with Browser() as browser:           # Unavailable (a reason) when chromium is not installed
        page = browser.new_page()
        page.navigate("http://127.0.0.1:8080/")
        page.evaluate("document.title")
        page.click("[data-pin='porch.button']")
        page.screenshot("out.png")

Every wait is bounded; chromium and its children (a process group of their own) are killed when
the browser is closed, whatever happened.
"""

import asyncio
import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import websockets

CHROMIUM = os.environ.get("MESHRUN_TEST_CHROMIUM", "/usr/bin/chromium")  # another only to test the skip
STEP = 10.0  # the bound on one call, in seconds


class Unavailable(Exception):
    """No browser here: the tests are skipped, with this reason."""


class CdpError(Exception):
    pass


class Browser:
    def __init__(self, width=1200, height=700, timeout=30.0):
        if not os.access(CHROMIUM, os.X_OK):
            raise Unavailable(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")
        self.dir = tempfile.mkdtemp(prefix="meshrun-chromium-")
        self.log_path = os.path.join(self.dir, "chromium.log")
        self.proc = None
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cdp", daemon=True)
        self.thread.start()
        self.size = (width, height)
        self.ws = None
        self.next_id = 0
        self.pending = {}
        self.events = []  # every event, in order (each a dict with method, params, sessionId)
        try:
            self._start(width, height, timeout)
        except BaseException:
            self.close()
            raise

    def _start(self, width, height, timeout):
        profile = os.path.join(self.dir, "profile")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--hide-scrollbars", "--mute-audio",
                 f"--window-size={width},{height}", f"--user-data-dir={profile}", "--remote-debugging-port=0",
                 "about:blank"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        # The port it took, then the browser's own websocket path: DevToolsActivePort's two lines.
        active = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        lines = []
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise CdpError(f"chromium ended ({self.proc.returncode}) before it listened:\n{self.log()}")
            try:
                with open(active) as f:
                    lines = f.read().split()
            except OSError:
                pass
            if len(lines) >= 2:
                break
            time.sleep(0.05)
        else:
            raise CdpError(f"chromium wrote no {active} within {timeout} s:\n{self.log()}")
        url = f"ws://127.0.0.1:{lines[0]}{lines[1]}"
        self.ws = self._run(self._connect(url))
        self.loop.call_soon_threadsafe(lambda: self.loop.create_task(self._read()))

    def log(self):
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()[-3000:]
        except OSError:
            return ""

    def _run(self, coroutine, timeout=STEP):
        return asyncio.run_coroutine_threadsafe(asyncio.wait_for(coroutine, timeout), self.loop).result(timeout + 1)

    @staticmethod
    async def _connect(url):  # made on the client's loop: websockets' Connect takes the loop it is made on
        return await websockets.connect(url, max_size=None, open_timeout=STEP, ping_interval=None)

    async def _read(self):
        try:
            async for raw in self.ws:
                message = json.loads(raw)
                if "id" in message:
                    future = self.pending.pop(message["id"], None)
                    if future and not future.done():
                        future.set_result(message)
                else:
                    self.events.append(message)
        except websockets.ConnectionClosed:
            pass
        for future in self.pending.values():
            if not future.done():
                future.set_exception(CdpError("the DevTools connection closed"))

    async def _call(self, method, params, session):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future = self.loop.create_future()
        self.pending[self.next_id] = future
        await self.ws.send(json.dumps(message))
        return await future

    def call(self, method, params=None, session=None, timeout=STEP):
        """The result of a DevTools command; CdpError if it failed."""
        reply = self._run(self._call(method, params, session), timeout)
        if "error" in reply:
            raise CdpError(f"{method}: {reply['error'].get('message')} {reply['error'].get('data', '')}")
        return reply.get("result", {})

    def new_page(self):
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": self.size[0], "height": self.size[1], "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self):
        if self.ws is not None:
            try:
                self._run(self.ws.close(), 2)
            except Exception:  # noqa: BLE001 - closing anyway
                pass
        if self.proc is not None and self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self.proc is not None:
            try:  # the group's other processes (renderers, zygote), if any outlived the browser
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(2)
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()


class Page:
    def __init__(self, browser, session):
        self.browser = browser
        self.session = session
        self.call("Page.enable")
        self.call("Runtime.enable")

    def call(self, method, params=None, timeout=STEP):
        return self.browser.call(method, params, self.session, timeout)

    def events(self, method):
        return [e["params"] for e in list(self.browser.events)
                if e.get("sessionId") == self.session and e.get("method") == method]

    def errors(self):
        """The page's uncaught exceptions and console errors so far, as text."""
        out = [e["exceptionDetails"].get("exception", {}).get("description") or e["exceptionDetails"].get("text")
               for e in self.events("Runtime.exceptionThrown")]
        out += [" ".join(str(a.get("value", a.get("description", ""))) for a in e["args"])
                for e in self.events("Runtime.consoleAPICalled") if e["type"] == "error"]
        return out

    def add_script(self, source):
        """Runs `source` in every document this page loads, before the page's own scripts."""
        self.call("Page.addScriptToEvaluateOnNewDocument", {"source": source})

    def navigate(self, url, timeout=STEP):
        reply = self.call("Page.navigate", {"url": url})
        if reply.get("errorText"):
            raise CdpError(f"navigate to {url}: {reply['errorText']}")
        deadline = time.monotonic() + timeout
        while self.evaluate("document.readyState") != "complete":
            if time.monotonic() > deadline:
                raise CdpError(f"{url} did not load within {timeout} s")
            time.sleep(0.05)

    def evaluate(self, expression, timeout=STEP):
        """The value of a JavaScript expression (a promise awaited), as JSON makes it."""
        reply = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True},
                          timeout)
        if "exceptionDetails" in reply:
            details = reply["exceptionDetails"]
            raise CdpError(f"{expression}: {details.get('exception', {}).get('description') or details.get('text')}")
        return reply["result"].get("value")

    def click(self, selector):
        """A mouse click (moved, pressed, released) in the middle of the first element `selector` finds."""
        box = self.evaluate(f"""(() => {{
            const e = document.querySelector({json.dumps(selector)});
            if (!e) return null;
            e.scrollIntoView({{block: "center", inline: "center"}});
            const r = e.getBoundingClientRect();
            return {{x: r.left + r.width / 2, y: r.top + r.height / 2}};
        }})()""")
        if box is None:
            raise CdpError(f"nothing on the page matches {selector}")
        for kind, button in (("mouseMoved", "none"), ("mousePressed", "left"), ("mouseReleased", "left")):
            self.call("Input.dispatchMouseEvent",
                      {"type": kind, "x": box["x"], "y": box["y"], "button": button, "clickCount": 1})

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"}, timeout=30)["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
