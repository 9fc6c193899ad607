"""``sal-runtime bench``: the performance record of a bundle (``record.py``: ``run_bench``,
``format_record``), built from the baselines it times beside the runtime (``baselines.py``), the
split of a predict into graph and host time (``breakdown.py``), FLOP counts (``flops.py``), the
GEMM peaks of every installed engine (``peaks.py``) and the other plans timed interleaved
(``plans.py``). The serving benchmark is the server's (:mod:`salkit.runtime.server.bench`)."""
