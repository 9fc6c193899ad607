"""salkit.runtime.server.launch: start-up failures are one SalkitError with the server's own words,
and a server that never becomes ready is stopped. Child processes are plain Python one-liners."""

from __future__ import annotations

import subprocess
import sys

import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.server.launch import rss_kib, start_server, stop_server, wait_ready

pytestmark = pytest.mark.timeout(60)


def test_a_server_that_exits_during_start_up_is_reported_with_its_output() -> None:
    crash = [sys.executable, "-c", "import sys; print('no bundle here', file=sys.stderr); sys.exit(3)"]
    with pytest.raises(SalkitError, match=r"exited with code 3 during start-up: no bundle here"):
        start_server(crash, 30, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def test_a_server_that_is_never_ready_times_out_and_is_stopped_by_sigterm() -> None:
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with pytest.raises(SalkitError, match=r"not ready within 0.3 s"):
            wait_ready("http://127.0.0.1:9", silent, 0.3)  # port 9 (discard): nobody answers
        assert silent.poll() is None  # wait_ready leaves the process as it is
        assert rss_kib(silent.pid) > 0
    finally:
        code = stop_server(silent, timeout=10)
    assert code == -15  # SIGTERM ended it, no SIGKILL was needed
