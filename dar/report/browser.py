"""Open a page in headless Chromium: console errors, network requests and a screenshot.

Chromium is driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
commands on fd 3, replies and events on fd 4, NUL-separated JSON), so no websocket
client or browser-automation package is needed; only Debian's `chromium`.

    with Browser() as b:
        page = b.open(Path("reports/digits/index.html"), screenshot="shot.png")
    page.errors      # console.error / warnings of level error, uncaught exceptions, failed loads
    page.requests    # every URL the page asked for (file: and data: only for a self-contained page)

Used by tests/test_report.py and by `python -m dar report --screenshot`.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-dev-shm-usage",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--host-resolver-rules=MAP * ~NOTFOUND",  # no name resolves: nothing can leave the machine
    "--remote-debugging-pipe",
)
INSTALL_HINT = "apt-get install -y chromium"


class BrowserError(RuntimeError):
    """Chromium is missing, died, or did not answer in time."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome executable ($CHROMIUM first), or None."""
    if os.environ.get("CHROMIUM"):
        return shutil.which(os.environ["CHROMIUM"])
    for name in CANDIDATES:
        if path := shutil.which(name):
            return path
    return None


@dataclass
class PageResult:
    url: str
    errors: list[str] = field(default_factory=list)  # console errors, exceptions, failed resource loads
    messages: list[str] = field(default_factory=list)  # every console message, as "level: text"
    requests: list[str] = field(default_factory=list)  # every URL requested
    title: str = ""
    size: tuple[int, int] = (0, 0)  # CSS content size (width, height)


class Browser:
    """One headless Chromium process with a fresh profile, closed on exit."""

    def __init__(self, executable: str | None = None, timeout: float = 60.0) -> None:
        self.executable = executable or find_chromium()
        if not self.executable:
            raise BrowserError(f"no Chromium found (tried $CHROMIUM and {', '.join(CANDIDATES)}); install it: {INSTALL_HINT}")
        self.timeout = timeout
        self._id = 0
        self._buffer = b""
        self._events: list[dict] = []

    # ------------------------------------------------------------ process
    def __enter__(self) -> Browser:
        self._profile = tempfile.TemporaryDirectory(prefix="dar-chromium-", ignore_cleanup_errors=True)
        to_child_r, self._to_child = os.pipe()  # our commands -> chromium fd 3
        self._from_child, from_child_w = os.pipe()  # chromium fd 4 -> replies and events

        def wire_fds() -> None:  # runs in the child before exec: the pipe ends become fds 3 and 4
            # Copy both above 10 first: a pipe end may itself be fd 3 or 4, and dup2(fd, fd) keeps close-on-exec.
            r, w = (fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in (to_child_r, from_child_w))
            os.dup2(r, 3)  # dup2 clears close-on-exec on its target
            os.dup2(w, 4)

        self._log = open(Path(self._profile.name) / "stderr.log", "wb")  # closed in __exit__
        self._proc = subprocess.Popen(
            [self.executable, *FLAGS, f"--user-data-dir={self._profile.name}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=self._log,
            preexec_fn=wire_fds,
            close_fds=False,  # fds 3 and 4 must survive exec; our other fds are close-on-exec (PEP 446)
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self.call("Target.setDiscoverTargets", discover=False)  # the first reply: the browser is up
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            if self._proc.poll() is None:
                self._send("Browser.close")
                self._proc.wait(timeout=10)
        except (BrowserError, OSError, subprocess.TimeoutExpired):
            self._proc.kill()
            self._proc.wait()
        finally:
            os.close(self._to_child)
            os.close(self._from_child)
            self._log.close()
            self._profile.cleanup()

    def stderr_tail(self, n: int = 2000) -> str:
        self._log.flush()
        return (Path(self._profile.name) / "stderr.log").read_bytes()[-n:].decode(errors="replace")

    # ----------------------------------------------------------- protocol
    def _send(self, method: str, session: str | None = None, **params: Any) -> int:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params}
        if session:
            msg["sessionId"] = session
        os.write(self._to_child, json.dumps(msg).encode() + b"\0")
        return self._id

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError(f"Chromium did not answer within {self.timeout:.0f} s\n{self.stderr_tail()}")
            ready, _, _ = select.select([self._from_child], [], [], left)
            if ready:
                chunk = os.read(self._from_child, 1 << 20)
                if not chunk:
                    raise BrowserError(f"Chromium exited (status {self._proc.poll()})\n{self.stderr_tail()}")
                self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(raw)

    def call(self, method: str, session: str | None = None, **params: Any) -> dict:
        """Send one command and wait for its reply; events that arrive meanwhile are kept."""
        want = self._send(method, session, **params)
        deadline = time.monotonic() + self.timeout
        while True:
            msg = self._read(deadline)
            if msg.get("id") == want:
                if "error" in msg:
                    raise BrowserError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            if "method" in msg:
                self._events.append(msg)

    def wait_for(self, method: str, session: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not any(e["method"] == method and e.get("sessionId") == session for e in self._events):
            msg = self._read(deadline)
            if "method" in msg:
                self._events.append(msg)

    # --------------------------------------------------------------- page
    def open(
        self,
        path: str | Path,
        screenshot: str | Path | None = None,
        width: int = 1400,
        height: int = 2400,
        full_page: bool = False,
        max_height: int = 16000,
    ) -> PageResult:
        """Load a local file, wait for its load event, collect errors; optionally save a PNG.

        The screenshot is the top `width` x `height` viewport, or the whole page (up to
        `max_height` CSS pixels) with `full_page`.
        """
        url = Path(path).resolve().as_uri()
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        session = self.call("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable", session)
        self.call("Emulation.setDeviceMetricsOverride", session, width=width, height=height, deviceScaleFactor=1, mobile=False)
        self._events.clear()
        self.call("Page.navigate", session, url=url)
        self.wait_for("Page.loadEventFired", session)
        self.call("Runtime.evaluate", session, expression="1", awaitPromise=True)  # let queued events arrive
        result = PageResult(url)
        result.title = self.call("Runtime.evaluate", session, expression="document.title")["result"].get("value", "")
        metrics = self.call("Page.getLayoutMetrics", session)
        content = metrics.get("cssContentSize") or metrics["contentSize"]
        result.size = (int(content["width"]), int(content["height"]))
        for e in self._events:
            if e.get("sessionId") == session:
                _collect(e["method"], e["params"], result)
        if screenshot:
            clip_h = min(result.size[1], max_height) if full_page else height
            shot = self.call(
                "Page.captureScreenshot",
                session,
                format="png",
                captureBeyondViewport=full_page,
                clip={"x": 0, "y": 0, "width": width, "height": clip_h, "scale": 1},
            )
            Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
            Path(screenshot).write_bytes(base64.b64decode(shot["data"]))
        self.call("Target.closeTarget", targetId=target)
        return result


def _collect(method: str, p: dict, result: PageResult) -> None:
    if method == "Runtime.consoleAPICalled":
        text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
        result.messages.append(f"{p['type']}: {text}")
        if p["type"] in ("error", "assert"):
            result.errors.append(f"console.{p['type']}: {text}")
    elif method == "Runtime.exceptionThrown":
        d = p["exceptionDetails"]
        result.errors.append(f"exception: {d.get('exception', {}).get('description', d.get('text', ''))}")
    elif method == "Log.entryAdded":
        entry = p["entry"]
        result.messages.append(f"{entry['level']}: {entry.get('text', '')}")
        if entry["level"] == "error":
            result.errors.append(f"{entry.get('source', 'log')}: {entry.get('text', '')} {entry.get('url', '')}".strip())
    elif method == "Network.requestWillBeSent":
        result.requests.append(p["request"]["url"])
    elif method == "Network.loadingFailed":
        result.errors.append(f"network: {p.get('errorText', 'failed')} ({p.get('type', '')})")
