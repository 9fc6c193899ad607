"""QE-FPN predict: encoder → T fixed Broyden iterations on the ``f`` graph → decoder.

::

    inj      = encoder(x)                          (B, D)
    z*       = broyden(z ↦ f(z, inj), z0 = 0)      exactly T steps, low-rank memory M
    saliency = sigmoid(decoder(z*))                (B, 1, S, S)

The solve always runs T iterations so its cost does not depend on the data (a fixed loop is what
a CUDA graph or a Triton model can capture); per sample it reports ``iterations`` (the first step
whose residual met the bundle's tolerance, T if none did) and ``residual`` (the relative residual
‖f(z) − z‖ / ‖z‖ of the returned, lowest-residual iterate). The Broyden update itself is
``salkit.kernels.broyden.solve_fixed`` (the Triton model runs the same); ``f`` reads and writes
buffers bound once per batch shape, and the solver's own buffers (the low-rank factors, 2 × M·D
floats per sample) are kept per batch shape too.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Iterator

import numpy as np

from salkit.kernels.broyden import BroydenWorkspace, solve_fixed
from salkit.kernels.coop import sigmoid_into
from salkit.runtime.backends.base import Array, Device, Runner


@dataclasses.dataclass
class QEFPNRunners:
    encoder: Runner
    f: Runner
    decoder: Runner


class _QEFPNWorkspace:
    def __init__(self, runners: QEFPNRunners, device: Device, batch: int, size: int, state_dim: int) -> None:
        empty = device.empty
        self.x = empty((batch, 3, size, size))
        self.injection = empty((batch, state_dim))
        self.z = empty((batch, state_dim))
        self.f_z = empty((batch, state_dim))
        self.logits = empty((batch, 1, size, size))
        self.z0 = np.zeros((batch, state_dim), dtype=np.float32)  # the solve's start, never written
        self.solver = BroydenWorkspace()  # host buffers of the solve, reused by every predict of this shape
        self.encode = runners.encoder.bind({"image": self.x}, {"injection": self.injection})
        self.f = runners.f.bind({"z": self.z, "injection": self.injection}, {"f_z": self.f_z})
        self.decode = runners.decoder.bind({"z": self.z}, {"logits": self.logits})


class QEFPNLoop:
    def __init__(
        self,
        runners: QEFPNRunners,
        device: Device,
        *,
        size: int,
        state_dim: int,
        iterations: int,
        memory: int | None = None,
        tol: float = 1e-3,
        stop_mode: str = "rel",
    ) -> None:
        self.runners, self.device = runners, device
        self.size, self.state_dim = size, state_dim
        self.iterations, self.memory, self.tol, self.stop_mode = iterations, memory, tol, stop_mode
        self._workspaces: dict[int, _QEFPNWorkspace] = {}

    def workspace(self, batch: int) -> _QEFPNWorkspace:
        if batch not in self._workspaces:
            self._workspaces[batch] = _QEFPNWorkspace(self.runners, self.device, batch, self.size, self.state_dim)
        return self._workspaces[batch]

    def predict(self, x: np.ndarray, *, iterations: int | None = None) -> dict[str, np.ndarray]:
        """x (B,3,S,S) normalised → saliency (B,1,S,S), iterations (B,), residual (B,) on the host."""
        batch = x.shape[0]
        steps = self.iterations if iterations is None else iterations
        ws = self.workspace(batch)
        device = self.device
        device.upload(np.ascontiguousarray(x, dtype=np.float32), ws.x)
        self.runners.encoder.run(ws.encode)

        def f(z: np.ndarray) -> Array:
            # The solver's state is small (B, D); it lives where the Broyden kernel runs (the host).
            device.upload(np.ascontiguousarray(z, dtype=np.float32), ws.z)
            self.runners.f.run(ws.f)
            device.synchronize()
            # ws.f_z is overwritten by the next call; the solver consumes it at once (f(z) − z).
            return ws.f_z if device.is_host else device.download(ws.f_z)

        with _single_threaded_blas(device.is_host):
            z, stats = solve_fixed(f, ws.z0, steps, tol=self.tol, memory=self.memory, stop_mode=self.stop_mode,
                                   workspace=ws.solver)
        device.upload(np.ascontiguousarray(z, dtype=np.float32), ws.z)
        self.runners.decoder.run(ws.decode)
        sigmoid_into(device.xp, ws.logits, ws.logits)
        device.synchronize()
        return {
            "saliency": np.asarray(device.download(ws.logits), dtype=np.float32),
            "iterations": np.asarray(stats["iterations"], dtype=np.float32),
            "residual": np.asarray(stats["residual"], dtype=np.float32),
        }


@contextlib.contextmanager
def _single_threaded_blas(on_host: bool) -> Iterator[None]:
    """numpy's BLAS on one thread while the solve alternates with ONNX Runtime on the same cores.

    OpenBLAS threads keep spinning after each of the solver's matrix–vector products and took the
    cores from ONNX Runtime's: ``f`` ran at 23 ms a call instead of 11 (352², 2 cores). The
    products are memory-bound, so one thread costs them little (5.1 → 7.5 ms). Splitting them over
    two non-spinning Python threads (halves of D) did not pay either: 0.95–1.00× on the host solve
    and 0.91–1.09× on a paper-size OpenVINO predict (interleaved medians, 2 cores, 2026-12).
    """
    if not on_host:
        yield
        return
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield
