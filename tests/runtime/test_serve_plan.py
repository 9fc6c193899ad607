"""``sal-runtime serve`` announces the plan its predictor runs: a real server process on two
simulated CPUs, its start-up line against the plan the loaded predictor logs."""

from __future__ import annotations

import os
import re
import subprocess
import time

import pytest

from salkit.runtime.server.launch import start_server, stop_server
from tests.runtime.server_helpers import ROOT, SAL_RUNTIME
from tests.runtime.toy_precision import passed, with_precision_records

# What each CPU may run of a bundle exported on an AMX Xeon (int8 judged with VNNI, bf16 passed).
ALLOWED = {
    "none": {"ort-cpu:fp32", "openvino:fp32"},
    "amx": {"ort-cpu:fp32", "openvino:fp32", "ort-cpu:int8", "openvino:int8", "openvino:bf16"},
}


@pytest.mark.parametrize("cpu", sorted(ALLOWED))
def test_the_start_up_line_names_the_plan_the_served_predictor_runs(cpu: str, toy_coop, tmp_path, simulated_cpu) -> None:
    pytest.importorskip("openvino")
    int8 = passed(int8_vnni=True)
    bundle = with_precision_records(
        toy_coop.path, tmp_path / "bundle", variant_files={"int8": {"latent_decoder": toy_coop.path / "latent_decoder.onnx"}},
        gate={"ort-cpu:int8": int8, "openvino:int8": int8, "openvino:bf16": passed()}, choice="openvino:bf16")
    simulated_cpu(cpu)  # the server process inherits the simulated CPU and a cache of its own: it really probes
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc, _ = start_server([SAL_RUNTIME, "serve", "--engine", str(bundle), "--threads", "1"], 120, cwd=ROOT,
                               stdout=sink, stderr=subprocess.STDOUT, env={**os.environ, "OMP_NUM_THREADS": "1"})
        try:
            give_up = time.monotonic() + 60  # the log line follows readiness; a bound on waiting, not on speed
            while "model ready" not in log.read_text() and time.monotonic() < give_up:
                time.sleep(0.05)
        finally:
            stop_server(proc)
    text = log.read_text()
    announced = re.search(r"^salkit serve: coop bundle \S+ on http://\S+, plan (\S+): ", text, re.M)
    served = re.search(r"model ready: toy_coop \(plan (\S+)\)", text)
    assert announced and served, text
    assert announced.group(1) == served.group(1) and served.group(1) in ALLOWED[cpu], text
