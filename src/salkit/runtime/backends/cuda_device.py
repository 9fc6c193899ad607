"""A CUDA device for the loops' buffers and elementwise math, through CuPy when it is installed.

With it, GPU backends keep every loop buffer on the device (one upload, one download per batch);
without it they fall back to host buffers and each runner stages copies itself, which is
correct but copies per engine call. CuPy is imported lazily: this module never loads it at import.
"""

from __future__ import annotations

import importlib.util
from typing import Any, Sequence

import numpy as np

from salkit.runtime.backends.base import HOST, Device


class CupyDevice(Device):
    name = "cuda"
    is_host = False

    def __init__(self, device_id: int = 0) -> None:
        import cupy

        self.xp = cupy
        self.device_id = device_id
        cupy.cuda.Device(device_id).use()

    def empty(self, shape: Sequence[int], dtype: str | np.dtype = "float32") -> Any:
        return self.xp.empty(tuple(shape), dtype=dtype)

    def upload(self, host: np.ndarray, out: Any) -> None:
        if isinstance(host, np.ndarray):
            out.set(np.ascontiguousarray(host, dtype=out.dtype))
        else:  # already a device array (DLPack / __cuda_array_interface__ input): device-to-device
            self.xp.copyto(out, host)

    def download(self, array: Any) -> np.ndarray:
        return self.xp.asnumpy(array)

    def synchronize(self) -> None:
        self.xp.cuda.get_current_stream().synchronize()


def cuda_device_or_host(device_id: int = 0) -> Device:
    if importlib.util.find_spec("cupy") is None:
        return HOST
    try:
        return CupyDevice(device_id)
    except Exception:  # cupy present but unusable (no driver / wrong CUDA): stay on the host
        return HOST
