"""Locust users for ``make loadtest``: binary KServe v2 requests of real photographs.

Each user sends, back to back (a closed loop, no think time), one photograph per request to
``POST /v2/models/$LOADTEST_MODEL/infer``: the image as UINT8 ``[1, H, W, 3]`` in the binary
tensor extension (what ``tritonclient.http`` sends), asking for ``SALIENCY`` only, in binary. An
answer counts as a success only if it is HTTP 200 and carries a ``[1, 1, H, W]`` FP32 map of the
right byte size. The photographs are the files listed (one path a line) in ``$LOADTEST_IMAGES``;
users take them in turn from one shared cycle. When the test stops, every request's start time
(s), duration (ms, unrounded) and outcome go to ``$LOADTEST_RECORDS`` (JSON), from which
scripts/loadtest.py computes throughput and percentiles. Run by scripts/loadtest.py, never on its
own against anything but a local server.
"""

from __future__ import annotations

import itertools
import json
import os

import gevent
import numpy as np
from locust import FastHttpUser, constant, events, task
from PIL import Image

HEADER = "Inference-Header-Content-Length"
MODEL = os.environ.get("LOADTEST_MODEL", "saliency")
_requests: list[tuple[bytes, dict[str, str], tuple[int, int], str]] = []
_cycle: itertools.cycle | None = None
_records: list[tuple[float, float, bool]] = []  # (start s, duration ms, success)


def _request(path: str) -> tuple[bytes, dict[str, str], tuple[int, int], str]:
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)  # (H, W, 3)
    head = {
        "inputs": [{"name": "IMAGE", "datatype": "UINT8", "shape": [1, *rgb.shape], "parameters": {"binary_data_size": rgb.nbytes}}],
        "outputs": [{"name": "SALIENCY", "parameters": {"binary_data": True}}],
    }
    text = json.dumps(head).encode()
    headers = {HEADER: str(len(text)), "Content-Type": "application/octet-stream"}
    return text + rgb.tobytes(), headers, rgb.shape[:2], os.path.basename(path)


@events.init.add_listener
def _load_photographs(environment, **_: object) -> None:
    global _cycle
    with open(os.environ["LOADTEST_IMAGES"], encoding="utf-8") as listing:
        paths = [line.strip() for line in listing if line.strip()]
    _requests.extend(_request(p) for p in paths)
    _cycle = itertools.cycle(_requests)
    # Decoding took a while without the event loop running; without a fresh clock the --run-time
    # timer, scheduled next, would count that time and end the test early.
    gevent.get_hub().loop.update_now()


@events.request.add_listener
def _record(start_time: float, response_time: float, exception: object = None, **_: object) -> None:
    _records.append((start_time, response_time, exception is None))


@events.test_stop.add_listener
def _write_records(environment, **_: object) -> None:
    path = os.environ.get("LOADTEST_RECORDS")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump({"requests": _records}, handle)


class PhotoUser(FastHttpUser):
    wait_time = constant(0)
    network_timeout = 300.0
    connection_timeout = 30.0

    @task
    def infer(self) -> None:
        body, headers, (height, width), _ = next(_cycle)
        with self.client.post(f"/v2/models/{MODEL}/infer", data=body, headers=headers, name="infer", catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {(response.text or '')[:200]}")
                return
            content = response.content or b""
            try:
                length = int(response.headers[HEADER])
                (output,) = json.loads(content[:length])["outputs"]
            except (KeyError, ValueError) as err:
                response.failure(f"not a binary v2 answer: {err}")
                return
            if output["shape"] != [1, 1, height, width] or len(content) - length != height * width * 4:
                response.failure(f"map shape {output['shape']} / {len(content) - length} bytes for a {height}x{width} photograph")
