"""What the CPU export runs on can do natively, read from ``/proc/cpuinfo`` (Linux; elsewhere the
model is "unknown CPU" and no reduced-precision unit is assumed).

Only what the precision choice needs: the model name it is recorded against, native bf16
(AVX512-BF16 or AMX-BF16: without them bf16 is emulated and slower than fp32) and an int8 dot
product (AVX512-VNNI, AVX-VNNI or AMX-INT8: without one, ONNX Runtime's U8S8 kernels multiply
through ``vpmaddubsw``, whose int16 pair sums saturate unless the weights use 7 bits).
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path

BF16_FLAGS = ("avx512_bf16", "amx_bf16")
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: str
    flags: frozenset[str]

    @property
    def bf16(self) -> bool:
        return any(f in self.flags for f in BF16_FLAGS)

    @property
    def int8_dot(self) -> bool:
        return any(f in self.flags for f in VNNI_FLAGS)

    def lacks(self, what: str) -> str:
        """One line: why ``what`` (bf16 / vnni) is not native here."""
        names = BF16_FLAGS if what == "bf16" else VNNI_FLAGS
        return f"{what} is not supported natively on {self.model} (no {' / '.join(n.upper() for n in names)})"


def parse_cpuinfo(text: str) -> CpuInfo:
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = frozenset(value.split())
    return CpuInfo(model or platform.processor() or "unknown CPU", flags)


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    try:
        return parse_cpuinfo(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace"))
    except OSError:
        return CpuInfo(platform.processor() or "unknown CPU", frozenset())
