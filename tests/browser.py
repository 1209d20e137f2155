"""Headless Chromium (Debian's ``chromium``) driven over the DevTools protocol, offline.

The browser gets no network but loopback: every other host name resolves to nothing
(``--host-resolver-rules``) and any request that would leave goes to a proxy that does not
exist. Each wait polls a condition against a deadline scaled by the run's time factor.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import websocket

from tests.timing import scaled

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
OFFLINE_FLAGS = (
    # Names resolve to nothing but the loopback addresses the app listens on.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1",
    # Whatever still tries to leave (an IP literal) goes to a proxy nobody runs; Chromium
    # never proxies loopback.
    "--proxy-server=http://127.0.0.1:9",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--metrics-recording-only",
)


class Page:
    """One browser tab: navigate, evaluate JavaScript, and the events it logged."""

    def __init__(self, socket: websocket.WebSocket) -> None:
        self.socket = socket
        self.events: list[dict[str, Any]] = []
        self._next_id = 0

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._next_id += 1
        message_id = self._next_id
        self.socket.send(json.dumps({"id": message_id, "method": method, "params": params or {}}))
        deadline = time.monotonic() + scaled(30)
        while time.monotonic() < deadline:
            with contextlib.suppress(websocket.WebSocketTimeoutException):
                message = json.loads(self.socket.recv())
                if message.get("id") == message_id:
                    if "error" in message:
                        raise AssertionError(f"{method}: {message['error']}")
                    return dict(message.get("result") or {})
                self.events.append(message)
        raise AssertionError(f"no answer to {method} within {scaled(30):g} s")

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def wait_for(self, expression: str, seconds: float, what: str) -> Any:
        """The value of ``expression`` once truthy, polled until the (scaled) deadline."""
        deadline = time.monotonic() + scaled(seconds)
        while time.monotonic() < deadline:
            value = self.evaluate(expression)
            if value:
                return value
            time.sleep(0.25)
        raise AssertionError(f"timed out after {scaled(seconds):g} s waiting for {what}")

    def messages(self) -> list[str]:
        """Console and log lines, exceptions, and CSP violations the page produced."""
        lines = []
        for event in self.events:
            params = event.get("params", {})
            if event.get("method") == "Log.entryAdded":
                entry = params["entry"]
                lines.append(f"{entry.get('source')}/{entry.get('level')}: {entry.get('text')}")
            elif event.get("method") == "Runtime.exceptionThrown":
                lines.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif event.get("method") == "Runtime.consoleAPICalled":
                texts = [str(arg.get("value", arg.get("description"))) for arg in params["args"]]
                lines.append(f"console/{params.get('type')}: {' '.join(texts)}")
        return lines

    def requested_urls(self) -> list[str]:
        return [
            event["params"]["request"]["url"]
            for event in self.events
            if event.get("method") == "Network.requestWillBeSent"
        ]


@contextlib.contextmanager
def offline_page(log: Callable[[str], None] = lambda _: None) -> Iterator[Page]:
    """A fresh headless Chromium (its own profile) with one blank tab, no network."""
    assert CHROMIUM, "chromium is not installed (apt-get install chromium)"
    profile = Path(tempfile.mkdtemp(prefix="chromium-"))
    stderr_path = profile / "stderr.log"
    with stderr_path.open("wb") as stderr:
        browser = subprocess.Popen(
            [
                CHROMIUM,
                "--headless",
                "--no-sandbox",  # root in CI containers
                "--disable-gpu",
                "--disable-dev-shm-usage",
                f"--user-data-dir={profile}",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                *OFFLINE_FLAGS,
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        port = _devtools_port(browser, profile, stderr_path)
        targets = json.loads(
            urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=scaled(10)).read()
        )
        target = next(t for t in targets if t.get("type") == "page")
        socket = websocket.create_connection(
            target["webSocketDebuggerUrl"], timeout=1, suppress_origin=True
        )
        try:
            page = Page(socket)
            for domain in ("Page", "Runtime", "Log", "Network"):
                page.call(f"{domain}.enable")
            yield page
        finally:
            socket.close()
    finally:
        browser.terminate()
        try:
            browser.wait(timeout=scaled(10))
        except subprocess.TimeoutExpired:
            browser.kill()
            browser.wait(timeout=scaled(10))
        log(stderr_path.read_text(errors="replace")[-2000:])
        shutil.rmtree(profile, ignore_errors=True)


def _devtools_port(browser: subprocess.Popen[bytes], profile: Path, stderr: Path) -> int:
    """The port Chromium chose, from the ``DevToolsActivePort`` file it writes."""
    deadline = time.monotonic() + scaled(60)
    active = profile / "DevToolsActivePort"
    while time.monotonic() < deadline:
        if browser.poll() is not None:
            raise AssertionError(f"chromium exited: {stderr.read_text(errors='replace')[-2000:]}")
        if active.exists():
            first = active.read_text().splitlines()[:1]
            if first and re.fullmatch(r"\d+", first[0]):
                return int(first[0])
        time.sleep(0.1)
    raise AssertionError(f"chromium did not open its DevTools port within {scaled(60):g} s")
