"""DynamicBatcher / BatchingPredictor: batching, grouping, chunking, errors, lifecycle, knobs."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time

import numpy as np
import pytest

from salkit.base.errors import SalkitError
from salkit.runtime.batching import BatcherClosedError, BatchStats, DynamicBatcher, QueueFullError
from salkit.runtime.batching_predictor import BatchingPredictor
from tests.runtime.fake_predictor import SIZE, FakePredictor, expected_refine, expected_saliency

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """fn(x, scale=...) = x * scale + row index within the call; records the call sizes."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.params: list[dict] = []
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()

    def __call__(self, x: np.ndarray, **params: float) -> dict[str, np.ndarray]:
        self.entered.set()
        assert self.gate.wait(10)
        self.sizes.append(x.shape[0])
        self.params.append(params)
        return {"y": x * params.get("scale", 1.0), "n": np.full(x.shape[0], x.shape[0])}


def _wait_for(predicate, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.002)


def test_queued_requests_are_batched_up_to_max_batch_size() -> None:
    fn = Recorder()
    fn.gate.clear()
    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=1) as batcher:
        first = batcher.submit([np.zeros((1, 2))])
        assert fn.entered.wait(5)  # the worker is busy with the first request
        futures = [batcher.submit([np.full((1, 2), i, dtype=float)]) for i in range(16)]
        _wait_for(lambda: batcher.queue_depth == 16)
        fn.gate.set()
        results = [f.result(5) for f in futures]
        first.result(5)
    assert fn.sizes == [1, 8, 8]
    for i, out in enumerate(results):
        np.testing.assert_array_equal(out["y"], np.full((1, 2), i))  # each caller gets its own row
        assert out["n"].tolist() == [8]
    assert batcher.batch_sizes == {1: 1, 8: 2}


def test_concurrent_threads_share_calls() -> None:
    fn = Recorder()
    with DynamicBatcher(fn, max_batch_size=16, max_delay_ms=200) as batcher:
        barrier = threading.Barrier(16)

        def call(i: int) -> np.ndarray:
            barrier.wait(5)
            return batcher(np.full((1, 3), i, dtype=float), timeout=10, scale=2.0)["y"]

        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            outs = list(pool.map(call, range(16)))
    assert len(fn.sizes) < 16 and sum(fn.sizes) == 16 and max(fn.sizes) > 1
    for i, y in enumerate(outs):
        np.testing.assert_array_equal(y, np.full((1, 3), 2.0 * i))


def test_different_parameters_never_share_a_call() -> None:
    fn = Recorder()
    fn.gate.clear()
    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=0) as batcher:
        blocker = batcher.submit([np.zeros((1, 1))], {"scale": 1.0})
        assert fn.entered.wait(5)
        futures = [batcher.submit([np.ones((1, 1))], {"scale": float(i % 2 + 2)}) for i in range(6)]
        odd = batcher.submit([np.ones((1, 2))], {"scale": 2.0})  # other trailing shape: cannot concatenate
        fn.gate.set()
        outs = [f.result(5)["y"].item() for f in futures]
        blocker.result(5)
        assert odd.result(5)["y"].shape == (1, 2)
    assert outs == [2.0, 3.0] * 3
    assert fn.sizes == [1, 3, 3, 1]
    assert [p["scale"] for p in fn.params] == [1.0, 2.0, 3.0, 2.0]  # groups in arrival order of their oldest


def test_exclusive_request_runs_alone_and_large_request_is_chunked() -> None:
    fn = Recorder()
    fn.gate.clear()
    with DynamicBatcher(fn, max_batch_size=4, max_delay_ms=0) as batcher:
        blocker = batcher.submit([np.zeros((1, 1))])
        assert fn.entered.wait(5)
        shared = [batcher.submit([np.ones((1, 1))]) for _ in range(2)]
        alone = batcher.submit([np.ones((1, 1))], exclusive=True)
        big = np.arange(10, dtype=float).reshape(10, 1)
        chunked = batcher.submit([big])
        fn.gate.set()
        for f in (blocker, *shared, alone):
            f.result(5)
        out = chunked.result(5)
    np.testing.assert_array_equal(out["y"], big)
    assert out["n"].tolist() == [4] * 4 + [4] * 4 + [2] * 2
    assert fn.sizes == [1, 2, 1, 4, 4, 2]


def test_each_future_carries_its_queue_wait_and_backend_time() -> None:
    fn = Recorder()
    fn.gate.clear()
    hold = 0.2
    with DynamicBatcher(fn, max_batch_size=4, max_delay_ms=0) as batcher:
        blocker = batcher.submit([np.zeros((1, 1))])
        assert fn.entered.wait(5)
        pair = [batcher.submit([np.ones((1, 1))]) for _ in range(2)]
        chunked = batcher.submit([np.zeros((6, 1))])  # runs alone in two calls
        start = time.monotonic()
        while time.monotonic() - start < hold:  # the blocker's call is held inside fn
            time.sleep(0.01)
        fn.gate.set()
        for f in (blocker, *pair, chunked):
            f.result(5)
    first, (a, b), big = blocker.timing, [f.timing for f in pair], chunked.timing
    # Lower bounds only (a loaded machine can only add to a wait): the blocker queued less than the pair behind it.
    assert first.batch_size == 1 and first.run_seconds >= hold and first.queue_seconds < a.queue_seconds
    assert a.batch_size == b.batch_size == 2 and a.run_seconds == b.run_seconds  # one call, shared
    assert a.queue_seconds >= hold and b.queue_seconds >= hold  # they waited behind the held call
    # every submit came before `start`, and no call began before `start + hold`
    assert big.batch_size == 6 and big.queue_seconds >= hold and big.run_seconds > 0
    assert fn.sizes == [1, 2, 4, 2]


def test_lone_request_waits_for_company_only_with_a_delay(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    from salkit.runtime import batching

    fn = Recorder()
    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=150) as batcher:
        start = time.monotonic()
        batcher(np.zeros((1, 1)), timeout=5)
        assert time.monotonic() - start >= 0.14  # it waited for company (no upper bound: a loaded machine waits longer)
    # max_delay 0 never waits on the clock: with the batcher's clock frozen a deadline would never pass,
    # yet the lone request runs (the 5 s timeout is liveness, not speed).
    monkeypatch.setattr(batching, "time", SimpleNamespace(monotonic=lambda: 0.0, perf_counter=time.perf_counter))
    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=0) as batcher:
        batcher(np.zeros((1, 1)), timeout=5)


def test_failure_reaches_every_caller_of_the_call_and_the_batcher_keeps_working() -> None:
    calls = []

    def fn(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape[0])
        if (x < 0).any():
            raise ValueError("negative input")
        return x + 1

    with DynamicBatcher(fn, max_batch_size=4, max_delay_ms=100) as batcher:
        bad = [batcher.submit([np.array([[v]], dtype=float)]) for v in (1.0, -1.0)]
        for f in bad:
            with pytest.raises(ValueError, match="negative input"):
                f.result(5)
        assert batcher(np.array([[5.0]]), timeout=5).item() == 6.0
    assert calls == [2, 1]


def test_wrong_output_batch_axis_is_reported() -> None:
    with DynamicBatcher(lambda x: x[:1], max_batch_size=4, max_delay_ms=50) as batcher:
        futures = [batcher.submit([np.zeros((1, 1))]) for _ in range(2)]
        with pytest.raises(RuntimeError, match="expected leading axis 2"):
            futures[0].result(5)


def test_asyncio_callers_are_batched() -> None:
    fn = Recorder()

    async def main(batcher: DynamicBatcher) -> list[float]:
        outs = await asyncio.gather(*[batcher.submit_async([np.full((1, 1), i, dtype=float)]) for i in range(6)])
        return [o["y"].item() for o in outs]

    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=100) as batcher:
        assert asyncio.run(asyncio.wait_for(main(batcher), 10)) == [0, 1, 2, 3, 4, 5]
    assert fn.sizes == [6]


def test_cancelled_request_is_dropped_before_it_runs() -> None:
    fn = Recorder()
    fn.gate.clear()
    with DynamicBatcher(fn, max_batch_size=8, max_delay_ms=0) as batcher:
        blocker = batcher.submit([np.zeros((1, 1))])
        assert fn.entered.wait(5)
        dropped = batcher.submit([np.zeros((1, 1))])
        kept = batcher.submit([np.ones((1, 1))])
        assert dropped.cancel()
        fn.gate.set()
        blocker.result(5)
        assert kept.result(5)["n"].tolist() == [1]
    assert fn.sizes == [1, 1]


def test_close_drains_or_fails_queued_requests_and_refuses_new_ones() -> None:
    fn = Recorder()
    fn.gate.clear()
    batcher = DynamicBatcher(fn, max_batch_size=2, max_delay_ms=0)
    running = batcher.submit([np.zeros((1, 1))])
    assert fn.entered.wait(5)
    queued = [batcher.submit([np.ones((1, 1))]) for _ in range(3)]
    closer = threading.Thread(target=batcher.close)
    closer.start()
    _wait_for(lambda: batcher._closing)
    with pytest.raises(BatcherClosedError):
        batcher.submit([np.zeros((1, 1))])
    fn.gate.set()
    closer.join(5)
    assert not closer.is_alive()
    assert running.result(1) and all(f.result(1) for f in queued)  # drained

    fn2 = Recorder()
    fn2.gate.clear()
    batcher2 = DynamicBatcher(fn2, max_batch_size=2, max_delay_ms=0)
    running2 = batcher2.submit([np.zeros((1, 1))])
    assert fn2.entered.wait(5)
    pending = batcher2.submit([np.zeros((1, 1))])
    closer2 = threading.Thread(target=batcher2.close, kwargs={"drain": False})
    closer2.start()
    _wait_for(lambda: batcher2._closing)
    fn2.gate.set()
    closer2.join(5)
    running2.result(1)
    with pytest.raises(BatcherClosedError):
        pending.result(1)


def test_queue_limit_and_hooks() -> None:
    fn = Recorder()
    fn.gate.clear()
    stats: list[BatchStats] = []
    depths: list[int] = []
    batcher = DynamicBatcher(fn, 2, 0, max_queue=3, on_batch=stats.append, on_queue_depth=depths.append)
    try:
        running = batcher.submit([np.zeros((1, 1))])
        assert fn.entered.wait(5)
        queued = [batcher.submit([np.zeros((1, 1))]) for _ in range(3)]
        with pytest.raises(QueueFullError, match="max_queue=3"):
            batcher.submit([np.zeros((1, 1))])
        fn.gate.set()
        for f in (running, *queued):
            f.result(5)
    finally:
        batcher.close()
    assert [s.size for s in stats] == [1, 2, 1] and [s.requests for s in stats] == [1, 2, 1]
    assert max(depths) == 3 and depths[-1] == 0
    assert all(s.run_seconds >= 0 and s.wait_seconds >= 0 for s in stats)


def test_a_failing_hook_does_not_break_inference() -> None:
    def bad_hook(_: object) -> None:
        raise RuntimeError("hook bug")

    with DynamicBatcher(lambda x: x * 3, 4, 0, on_batch=bad_hook, on_queue_depth=bad_hook) as batcher:
        assert batcher(np.ones((1, 1)), timeout=5).item() == 3.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_size": 0}, "max_batch_size must be an integer >= 1, got 0: use 1"),
        ({"max_batch_size": 2.5}, "max_batch_size must be an integer >= 1, got 2.5"),
        ({"max_batch_size": True}, "max_batch_size must be an integer >= 1, got True"),
        ({"max_delay_ms": -1}, "max_delay_ms must be a finite number >= 0, got -1: 0 runs"),
        ({"max_delay_ms": float("nan")}, "max_delay_ms must be a finite number >= 0, got nan"),
        ({"max_delay_ms": "5"}, "max_delay_ms must be a number of milliseconds, got '5'"),
        ({"max_delay_ms": 30000}, "the value is in milliseconds"),
        ({"max_batch_size": 8, "max_queue": 4}, "max_queue=4 is smaller than max_batch_size=8: use max_queue >= 8"),
    ],
)
def test_knobs_are_validated_with_a_fix(kwargs: dict, message: str) -> None:
    with pytest.raises(SalkitError) as info:
        DynamicBatcher(lambda x: x, **kwargs)
    assert message in str(info.value)


def test_non_callable_and_bad_requests_are_refused() -> None:
    with pytest.raises(SalkitError, match="needs a callable"):
        DynamicBatcher(42)
    with DynamicBatcher(lambda x, y: x, 4, 0) as batcher:
        with pytest.raises(SalkitError, match="leading batch axis"):
            batcher.submit([np.zeros((2, 1)), np.zeros((3, 1))])
        with pytest.raises(SalkitError, match="hashable"):
            batcher.submit([np.zeros((1, 1)), np.zeros((1, 1))], {"bad": [1]})


def _batch(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 3, SIZE, SIZE)).astype(np.float32)


def test_batching_predictor_matches_direct_calls_and_groups_options() -> None:
    fake = FakePredictor()
    fake.gate = threading.Event()
    with BatchingPredictor(fake, max_batch_size=8, max_delay_ms=0) as bp:
        assert bp.manifest is fake.manifest and bp.backend_name == "fake"
        blocker = bp.submit_predict(_batch(1))
        _wait_for(lambda: len(fake.calls) == 1)
        xs = [_batch(1, seed=i) for i in range(6)]
        futures = [bp.submit_predict(x, samples=4 if i % 2 else None) for i, x in enumerate(xs)]
        seeded_x = _batch(1, seed=99)
        seeded = bp.submit_predict(seeded_x, seed=7)
        seeded_twin = bp.submit_predict(seeded_x, seed=7)
        refined = bp.submit_refine(xs[0], np.full((1, 1, SIZE, SIZE), 0.5, np.float32), steps=2)
        fake.gate.set()
        blocker.result(5)
        for i, (x, f) in enumerate(zip(xs, futures, strict=True)):
            out = f.result(5)
            np.testing.assert_allclose(out["saliency"], expected_saliency(x, 4 if i % 2 else 2, 3), rtol=1e-6)
            assert set(out) == {"saliency", "predictive", "aleatoric", "epistemic"}
        np.testing.assert_array_equal(seeded.result(5)["saliency"], seeded_twin.result(5)["saliency"])
        np.testing.assert_allclose(refined.result(5), expected_refine(np.full((1, 1, SIZE, SIZE), 0.5), 2))
    fake.gate = None
    direct = fake.predict_tensor(seeded_x, seed=7)["saliency"]
    np.testing.assert_array_equal(seeded.result()["saliency"], direct)  # seeded: same as unbatched
    sizes = [(op, n, opts.get("samples"), opts.get("seed")) for op, n, opts in fake.calls[:-1]]
    assert sizes == [
        ("predict", 1, 2, None),
        ("predict", 3, 2, None),
        ("predict", 3, 4, None),
        ("predict", 1, 2, 7),
        ("predict", 1, 2, 7),
        ("refine", 1, None, None),
    ]
    assert fake.max_active == 1  # one worker: the predictor never sees concurrent calls
    assert not fake.closed  # the caller owns the predictor


def test_batching_predictor_from_many_threads() -> None:
    fake = FakePredictor(per_row=0.002)
    xs = [_batch(1, seed=i) for i in range(24)]
    with BatchingPredictor(fake, max_batch_size=8, max_delay_ms=20) as bp:
        with concurrent.futures.ThreadPoolExecutor(12) as pool:
            outs = list(pool.map(lambda x: bp.predict_tensor(x, uncertainty=False), xs))
    for x, out in zip(xs, outs, strict=True):
        assert set(out) == {"saliency"}
        np.testing.assert_allclose(out["saliency"], expected_saliency(x, 2, 3), rtol=1e-6)
    sizes = [n for _, n, _ in fake.calls]
    assert sum(sizes) == 24 and len(sizes) < 24 and max(sizes) <= 8
