"""Open a page in headless Chromium and report what a person would meet there: console errors, exceptions and
failed requests, the headings, whether every image decodes, what sticks out of the window, a full-page screenshot.

It speaks the DevTools protocol over ``--remote-debugging-pipe`` (JSON messages ending in NUL on the browser's
file descriptors 3 and 4): no port, no websocket, nothing beyond the standard library.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--remote-debugging-pipe")  # fmt: skip
TIMEOUT = 60.0  # seconds for the browser to answer one command

# Runs in the page once it has loaded: images decoded, headings, elements wider than the window (the contents
# of a horizontally scrolled box aside).
_INSPECT = """(async () => {
  const images = await Promise.all([...document.images].map(async (img) => {
    let decoded = true;
    try { await img.decode(); } catch (e) { decoded = false; }
    return {alt: img.alt, decoded, width: img.naturalWidth, height: img.naturalHeight};
  }));
  const headings = [...document.querySelectorAll("h1, h2")].map((h) => h.textContent.trim());
  const limit = document.documentElement.clientWidth;
  const overflowing = [...document.querySelectorAll("body *")]
    .filter((e) => !(e.parentElement && e.parentElement.closest(".scroll")))
    .filter((e) => e.getBoundingClientRect().right > limit + 1)
    .map((e) => e.tagName.toLowerCase() + (e.className ? "." + e.className : ""));
  if (document.documentElement.scrollWidth > limit) overflowing.push("the page scrolls sideways");
  const scrolled = [...document.querySelectorAll(".scroll")].filter((e) => e.scrollWidth > e.clientWidth + 1)
    .map((e) => e.closest("section") ? e.closest("section").querySelector("h2").textContent.trim() : "page");
  return {images, headings, overflowing, scrolled};
})()"""


@dataclass
class Seen:
    errors: list[str]
    headings: list[str]
    images: list[dict[str, Any]]
    overflowing: list[str]
    screenshot: bytes
    scrolled: list[str]  # the sections whose wide box scrolls sideways (its table does not fit)


class DevTools:
    """A headless Chromium and its DevTools pipe."""

    def __init__(self, chromium: str, profile: Path) -> None:
        commands, self._out = os.pipe()
        self._in, replies = os.pipe()
        commands, replies = (_above_4(fd) for fd in (commands, replies))
        # bash (which, unlike dash, takes fds above 9) puts the pipe ends where Chromium reads (3) and writes (4)
        script = f'exec "$0" "$@" 3<&{commands} 4>&{replies}'
        self.process = subprocess.Popen(["/bin/bash", "-c", script, chromium, *FLAGS, f"--user-data-dir={profile}",
                                         "about:blank"], pass_fds=(commands, replies), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        os.close(commands)
        os.close(replies)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next += 1
        message = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for(self, method: str) -> dict[str, Any]:
        """The first event ``method`` (already received, or the next one to come)."""
        while True:
            found = next((e for e in self.events if e.get("method") == method), None)
            if found is not None:
                return found
            self.events.append(self._receive())

    def _receive(self) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._in], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer")
            chunk = os.read(self._in, 1 << 20)
            if not chunk:
                raise ConnectionError("Chromium closed the DevTools pipe")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):  # the browser may leave before it answers
            self.call("Browser.close")
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._out)
        os.close(self._in)


def _above_4(fd: int) -> int:
    """``fd`` moved to a number above 4, so that putting the pipes on 3 and 4 cannot overwrite one of them."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


def _errors(events: list[dict[str, Any]]) -> list[str]:
    """Console errors, uncaught exceptions, failed requests and requests leaving the file (a page must be whole)."""
    found = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
        elif method == "Runtime.exceptionThrown":
            found.append("exception: " + params["exceptionDetails"].get("text", ""))
        elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
            found.append(f"log: {params['entry']['text']} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            found.append(f"request failed: {params.get('errorText')}")
        elif method == "Network.requestWillBeSent" and not params["request"]["url"].startswith(("file:", "data:")):
            found.append(f"request to {params['request']['url']}")
    return found


def open_page(chromium: str, path: Path, profile: Path, width: int) -> Seen:
    """Load the file ``path`` in a window ``width`` CSS pixels wide and report what is seen."""
    browser = DevTools(chromium, profile)
    try:
        target = browser.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = browser.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            browser.call(f"{domain}.enable", session=session)
        browser.call("Emulation.setDeviceMetricsOverride", {"width": width, "height": 900, "deviceScaleFactor": 1,
                                                            "mobile": False}, session)  # fmt: skip
        browser.call("Page.navigate", {"url": path.resolve().as_uri()}, session)
        browser.wait_for("Page.loadEventFired")
        inspected = browser.call("Runtime.evaluate", {"expression": _INSPECT, "awaitPromise": True,
                                                      "returnByValue": True}, session)["result"]["value"]  # fmt: skip
        height = browser.call("Page.getLayoutMetrics", session=session)["cssContentSize"]["height"]
        shot = browser.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True,
                                                       "clip": {"x": 0, "y": 0, "width": width, "height": height,
                                                                "scale": 1}}, session)  # fmt: skip
        return Seen(_errors(browser.events), inspected["headings"], inspected["images"], inspected["overflowing"],
                    base64.b64decode(shot["data"]), inspected["scrolled"])  # fmt: skip
    finally:
        browser.close()
