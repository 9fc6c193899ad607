"""A server in a child process on 127.0.0.1: a free port, start-up until ready, its memory, SIGTERM shutdown.

The serving benchmark (:mod:`salkit.runtime.server.bench`), ``scripts/loadtest.py`` and the live
server tests start ``sal-runtime serve`` (or a stand-in with the same flags) this way. Ready means
KServe v2's ``/v2/health/ready`` answers 200; it is asked with urllib, so starting a server needs
nothing beyond the standard library.
"""

from __future__ import annotations

import http.client
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

from salkit.base.errors import SalkitError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago (the OS's choice)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_kib(pid: int) -> int:
    """The resident memory of a running process in KiB (Linux: /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SalkitError(f"no VmRSS for pid {pid} (has it exited?)")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float) -> float:
    """Ask ``url``/v2/health/ready until it answers 200; returns the seconds that took.

    SalkitError if the process exits first (with what it wrote to a pipe, if its output is piped)
    or when ``timeout`` seconds pass; the process is left as it is.
    """
    start = time.monotonic()
    while True:
        if proc.poll() is not None:
            pipe = proc.stderr or proc.stdout
            output = pipe.read().decode(errors="replace").strip() if pipe is not None else ""
            raise SalkitError(f"the server exited with code {proc.returncode} during start-up" + (f": {output}" if output else ""))
        try:
            with urllib.request.urlopen(url + "/v2/health/ready", timeout=2) as response:
                if response.status == 200:
                    return time.monotonic() - start
        except (OSError, http.client.HTTPException):  # not listening yet, or 503 while the model loads
            pass
        if time.monotonic() - start > timeout:
            raise SalkitError(f"the server was not ready within {timeout:g} s")
        time.sleep(0.05)


def start_server(command: list[str], timeout: float, **popen: Any) -> tuple[subprocess.Popen, str]:
    """Run ``command --port N`` on a free port N and wait until it is ready: (process, base url).

    ``popen`` goes to :class:`subprocess.Popen` (output pipes, cwd, env). A server that is not
    ready in time is stopped before the SalkitError is raised.
    """
    port = free_port()
    proc = subprocess.Popen([*command, "--port", str(port)], **popen)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, proc, timeout)
    except BaseException:
        stop_server(proc)
        raise
    return proc, url


def stop_server(proc: subprocess.Popen, timeout: float = 30) -> int | None:
    """SIGTERM, ``timeout`` seconds for a graceful exit, then SIGKILL; closes the output pipes.

    Returns the exit code, or None when the server had to be killed.
    """
    code: int | None = proc.poll()
    if code is None:
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()
    return code
