"""The Python API: ``Predictor.from_bundle(path).predict(images)`` (see docs/architecture.md).

Example::

    from salkit.runtime import Predictor

    with Predictor.from_bundle("bundle/") as predictor:
        result = predictor.predict(["cat.jpg", "dog.png"], seed=0)
        result.saliency[0]                  # (H, W) float32 in [0, 1], the image's own size
        result.uncertainty["epistemic"][0]  # coop bundles: entropy maps in nats

A predictor owns one runner per graph and the loop buffers of every batch shape it has seen.
Calls are serialised by a lock (the buffers are shared), so one predictor can be used from many
threads; for throughput under concurrency wrap it in ``salkit.runtime.batching``'s batcher,
which merges concurrent requests into one batch.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from salkit.base.errors import SalkitError
from salkit.runtime.backends import create_runner, device_for
from salkit.runtime.backends.base import Runner
from salkit.runtime.bundle import Manifest, load_bundle
from salkit.runtime.frontend import ImageCalls, check_batch, check_maps
from salkit.runtime.kinds import kind_of
from salkit.runtime.plan import Plan, Probe, choose_plan


class Predictor(ImageCalls):
    """The tensor-level calls over a bundle's runners; ``predict`` / ``refine`` on images are
    ImageCalls' (salkit.runtime.frontend), the front end the server's models share."""

    manifest: Manifest
    backend_name: str

    def __init__(
        self,
        manifest: Manifest,
        backend: str = "auto",
        precision: str = "auto",
        threads: int | None = None,
        *,
        check_gate: bool = True,
        probe: Probe | None = None,
        fallback: bool = True,
        plan: Plan | None = None,
    ) -> None:
        """``backend``/``precision``: a name or "auto" (see salkit.runtime.plan for how auto chooses).

        ``check_gate=False`` runs a plan the bundle's precision gate rejected (for the gate itself
        and for diagnosis); ``fallback=False`` refuses a named plan this CPU cannot run instead of
        running it at fp32; ``probe`` replaces the timed probe of ``auto`` (tests). ``plan``: one
        :func:`choose_plan` already returned for this manifest (``serve`` announces it before loading).
        """
        self.manifest = manifest
        self.runtime_kind = kind_of(manifest)  # what differs per model kind (salkit.runtime.kinds)
        if plan is None:
            plan = choose_plan(manifest, backend, precision, threads, check_gate=check_gate, probe=probe or probe_predict,
                               fallback=fallback)
        self.backend_name, self.precision, self.backend_reason = plan.backend, plan.precision, plan.reason
        self.plan_line = plan.line  # what the commands print: the plan that runs (per graph when mixed) and why
        self.graph_plans = dict(plan.graphs)  # graph → "<backend>:<precision>" when mixed, else {}
        self._plan = plan
        self.device = device_for(self.backend_name)
        self._lock = threading.Lock()
        self._runners: dict[str, Runner] = {}
        self._threads = threads
        self._closed = False
        try:
            self._build_loop()
        except (KeyError, TypeError, ValueError) as err:
            self.close()
            raise SalkitError(
                f"bundle {manifest.root}: the manifest's {manifest.model_kind} settings are incomplete or malformed "
                f"({type(err).__name__}: {err}); re-export the checkpoint"
            ) from None
        except BaseException:
            self.close()  # runners loaded before the failure are released
            raise

    def _build_loop(self) -> None:
        self.loop = self.runtime_kind.build_loop(self.manifest, self._runner, self.device, precision=self._plan.loop_precision)

    @classmethod
    def from_bundle(
        cls, path: str | Path, backend: str = "auto", precision: str = "auto", threads: int | None = None, **options: Any
    ) -> "Predictor":
        return cls(load_bundle(path), backend=backend, precision=precision, threads=threads, **options)

    @property
    def plan(self) -> str:
        """"<backend>:<precision>", e.g. "openvino:bf16"."""
        return f"{self.backend_name}:{self.precision}"

    def _runner(self, graph: str) -> Runner:
        if graph not in self._runners:
            backend, precision = self._plan.plan_of(graph)
            engines = {self._plan.plan_of(name)[0] for name in self._plan.graphs} | {self.backend_name}
            runner = create_runner(backend, self.manifest, graph, threads=self._threads, device=self.device, precision=precision,
                                   shares_cores=len(engines) > 1)
            self._runners[graph] = runner.load()
        return self._runners[graph]

    # -- options ----------------------------------------------------------------------------
    @property
    def kind(self) -> str:
        return self.manifest.model_kind

    def _defaults(self, samples: int | None, steps: int | None) -> tuple[int, int]:
        return self.runtime_kind.defaults(self.manifest, samples, steps)

    def _chunks(self, batch: int) -> list[slice]:
        limit = max(1, int(self.manifest.batch.get("max", batch) or batch))
        return [slice(i, min(i + limit, batch)) for i in range(0, batch, limit)]

    def _live(self) -> None:
        if self._closed:
            raise SalkitError("this Predictor is closed")

    # -- tensor level -----------------------------------------------------------------------
    def predict_tensor(
        self,
        x: Any,
        *,
        samples: int | None = None,
        steps: int | None = None,
        noise: bool = False,
        uncertainty: bool = True,
        seed: int | None = None,
        path: str = "split",
        latents: np.ndarray | None = None,
        noise_values: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """x (B,3,S,S) float32 normalised → "saliency" (B,1,S,S) and, per kind, the extras.

        ``latents`` (N,B,d) and ``noise_values`` (K,B,1,S,S) replace the random draws (for
        comparisons against a reference on the same samples); ``path="whole"`` runs the
        generator graph N times instead of the encoder once (the authors' way).
        """
        x = check_batch(x, self.manifest.input_size)
        n, k = self._defaults(samples, steps)
        with self._lock:
            self._live()
            return self.runtime_kind.predict(self.loop, x, self._chunks(x.shape[0]), samples=n, steps=k, noise=noise,
                                             uncertainty=uncertainty, seed=seed, path=path, latents=latents,
                                             noise_values=noise_values, runner=self._runner)

    def refine_tensor(self, x: Any, maps: Any, *, steps: int | None = None, noise_values: np.ndarray | None = None) -> np.ndarray:
        """x (B,3,S,S), maps (B,1,S,S) probabilities in [0, 1] → refined probabilities (B,1,S,S)."""
        if not self.runtime_kind.refines:
            raise SalkitError(f"refine needs a cooperative (coop) bundle; {self.manifest.root} is {self.kind}")
        x = check_batch(x, self.manifest.input_size)
        size = self.manifest.input_size
        maps = check_maps(maps, (x.shape[0], 1, size, size))
        k = self.runtime_kind.refine_steps(self.manifest, steps)
        with self._lock:
            self._live()
            return self.runtime_kind.refine(self.loop, x, maps, self._chunks(x.shape[0]), steps=k, noise_values=noise_values)

    # -- life cycle -------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            for runner in self._runners.values():
                runner.close()
            self._runners.clear()
            self._closed = True

    def __enter__(self) -> "Predictor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Predictor({self.manifest.model_kind} {self.manifest.model_name}, backend={self.backend_name}, precision={self.precision})"


def probe_predict(manifest: Manifest, backend: str, precision: str, threads: int | None) -> float:
    """Seconds of one predict at batch 1 with the bundle's defaults, after one warm-up call."""
    size = manifest.input_size
    grid = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    x = np.broadcast_to(np.stack([grid[None, :] * grid[:, None]] * 3)[None], (1, 3, size, size)).copy()  # (1, 3, S, S)
    with Predictor(manifest, backend=backend, precision=precision, threads=threads, fallback=False) as predictor:
        predictor.predict_tensor(x, seed=0)
        start = time.perf_counter()
        predictor.predict_tensor(x, seed=0)
        return time.perf_counter() - start
