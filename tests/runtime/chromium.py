"""Headless Chromium driven over the DevTools protocol on a pipe, with the standard library only.

``--remote-debugging-pipe`` makes Chromium read protocol commands from its fd 3 and write
answers and events to its fd 4, each message JSON ended by a NUL byte: no port, no websocket and
no driver package. A reader thread files answers by id and keeps events; every wait is bounded.

    with Chromium.launch(tmp_path) as browser:
        page = browser.new_page()
        page.navigate(url)
        page.wait_for("document.body.dataset.state === 'ready'", timeout=60)
        page.set_files("#photo", [path])

The binary is ``$SALKIT_CHROMIUM`` or the first of chromium / chromium-browser / google-chrome on
PATH (Debian's package installs ``chromium``; scripts/chromium_env.sh installs it for the tests).
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str | None:
    explicit = os.environ.get("SALKIT_CHROMIUM")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    return next((path for path in map(shutil.which, NAMES) if path), None)


def _high(fd: int) -> int:
    """``fd`` moved to a number >= 10, so that the wrapper's ``3<&N 4>&M`` cannot clobber it."""
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """A protocol error, a page-side exception, a dead browser or a wait that ran out."""


class Chromium:
    def __init__(self, proc: subprocess.Popen, to_browser: int, from_browser: int) -> None:
        self.proc = proc
        self._out = os.fdopen(to_browser, "wb", buffering=0)
        self._in = os.fdopen(from_browser, "rb", buffering=0)
        self._lock = threading.Condition()
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="chromium-cdp", daemon=True)
        self._reader.start()

    @classmethod
    def launch(cls, profile: Path, binary: str | None = None) -> Chromium:
        binary = binary or find_chromium()
        if binary is None:
            raise BrowserError("no Chromium found (apt-get install chromium, or set SALKIT_CHROMIUM)")
        to_read, to_write = map(_high, os.pipe())  # we write → Chromium's fd 3
        from_read, from_write = map(_high, os.pipe())  # Chromium's fd 4 → we read
        args = [
            binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check", "--disable-extensions",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--mute-audio",
            "--password-store=basic", "--use-mock-keychain", "about:blank",
        ]  # fmt: skip
        # bash puts the two pipe ends on fds 3 and 4 (subprocess keeps fd numbers, it cannot move them).
        wrapper = f'exec 3<&{to_read} 4>&{from_write} {to_read}<&- {from_write}>&-; exec "$@"'
        proc = subprocess.Popen(
            ["bash", "-c", wrapper, "chromium", *args], pass_fds=(to_read, from_write),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(to_read)
        os.close(from_write)
        return cls(proc, to_write, from_read)

    def _read(self) -> None:
        buffer = b""
        while True:
            try:
                chunk = self._in.read(1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            with self._lock:
                for raw in messages:
                    message = json.loads(raw)
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self.events.append(message)
                self._lock.notify_all()
        with self._lock:
            self._closed = True
            self._lock.notify_all()

    def send(self, method: str, params: dict[str, Any] | None = None, *, session: str | None = None, timeout: float = 60.0) -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        try:
            self._out.write(json.dumps(message).encode() + b"\0")
        except OSError as err:
            raise BrowserError(f"Chromium is gone ({err}); exit code {self.proc.poll()}") from None
        end = time.monotonic() + timeout
        with self._lock:
            while ident not in self._answers:
                left = end - time.monotonic()
                if self._closed:
                    raise BrowserError(f"Chromium closed the pipe during {method}; exit code {self.proc.poll()}")
                if left <= 0:
                    raise BrowserError(f"no answer to {method} within {timeout:g} s")
                self._lock.wait(left)
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error'].get('message')} {answer['error'].get('data', '')}".strip())
        return answer.get("result", {})

    def new_page(self) -> Page:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, session)
        for domain in ("Page", "Runtime", "Log"):
            page.send(f"{domain}.enable")
        return page

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=10)
        except BrowserError:
            pass
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(15)
        for handle in (self._out, self._in):
            try:
                handle.close()
            except OSError:
                pass

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """One tab, attached as a flat session."""

    def __init__(self, browser: Chromium, session: str) -> None:
        self.browser = browser
        self.session = session

    def send(self, method: str, params: dict[str, Any] | None = None, timeout: float = 60.0) -> dict[str, Any]:
        return self.browser.send(method, params, session=self.session, timeout=timeout)

    def navigate(self, url: str, timeout: float = 60.0) -> None:
        answer = self.send("Page.navigate", {"url": url}, timeout=timeout)
        if answer.get("errorText"):
            raise BrowserError(f"navigating to {url}: {answer['errorText']}")
        self.wait_for("document.readyState === 'complete'", timeout=timeout)

    def evaluate(self, expression: str, timeout: float = 60.0) -> Any:
        """The value of a JavaScript expression (promises awaited), as JSON."""
        answer = self.send(
            "Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True}, timeout=timeout
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            raise BrowserError(f"{expression[:80]!r} threw: {details.get('exception', {}).get('description') or details.get('text')}")
        return answer["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.1) -> Any:
        """Poll until ``expression`` is truthy; returns its value."""
        end = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression, timeout=max(1.0, end - time.monotonic()))
            if value:
                return value
            if time.monotonic() > end:
                raise BrowserError(f"waited {timeout:g} s for {expression!r}")
            time.sleep(interval)

    def set_files(self, selector: str, paths: list[str | os.PathLike[str]]) -> None:
        """Choose files in an ``<input type=file>`` as a user would (its input and change events fire)."""
        root = self.send("DOM.getDocument", {"depth": 0})["root"]["nodeId"]
        node = self.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
        if not node:
            raise BrowserError(f"no element {selector!r} on the page")
        self.send("DOM.setFileInputFiles", {"nodeId": node, "files": [str(Path(p).resolve()) for p in paths]})

    def drop_files(self, selector: str, paths: list[str | os.PathLike[str]]) -> None:
        """Drag files from outside the browser and drop them on the middle of an element."""
        box = self.evaluate(f"(() => {{ const r = document.querySelector({json.dumps(selector)}).getBoundingClientRect();"
                            " return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        data = {"items": [], "files": [str(Path(p).resolve()) for p in paths], "dragOperationsMask": 1}  # 1: copy
        for kind in ("dragEnter", "dragOver", "drop"):
            self.send("Input.dispatchDragEvent", {"type": kind, "x": box[0], "y": box[1], "data": data})

    def problems(self) -> list[str]:
        """Uncaught exceptions and console/log errors this page reported (CSP refusals among them)."""
        lines = []
        with self.browser._lock:
            events = [e for e in self.browser.events if e.get("sessionId") == self.session]
        for event in events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                lines.append(details.get("exception", {}).get("description") or details.get("text", "exception"))
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                lines.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params.get("args", [])))
            elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
                lines.append(f"{params['entry'].get('source')}: {params['entry'].get('text')} {params['entry'].get('url', '')}".strip())
        return lines
