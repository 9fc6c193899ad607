"""What this CPU can do natively: the model name and the matrix-unit flags that decide precisions.

=============== ============================================================================
capability      true when
=============== ============================================================================
``bf16``        AMX-BF16 or AVX512-BF16: bf16 matrix products run on the CPU's own units
                (elsewhere a bf16 "hint" is emulated or ignored, and only costs accuracy)
``int8``        an integer dot-product unit (AMX-INT8, AVX512-VNNI, AVX-VNNI) or at least AVX2,
                whose u8·s8 multiply-adds ONNX Runtime and OpenVINO use for int8 graphs
``int8_vnni``   the dot-product units proper (int8 is then several times the fp32 rate)
=============== ============================================================================

This module is the one reader of them: export (which precisions to gate and record) and the
runtime (which plan to run) both ask :func:`cpu_info`, so both honour the two settings below.

Flags come from ``/proc/cpuinfo`` (Linux); where OpenVINO is installed its CPU plugin's
``OPTIMIZATION_CAPABILITIES`` is asked too (``BF16`` there confirms the flag), but only by
:func:`cpu_info` with ``ask_openvino=True``: importing OpenVINO takes a while.

Capabilities can be forced off to simulate a smaller machine, e.g. a bundle exported where bf16
exists, run where it does not: ``SALKIT_CPU_DISABLE=bf16`` (a comma list of capability names
or raw flags such as ``amx_bf16``; an unknown name is a user error), or the ``disable`` argument
of :func:`cpu_info`. A larger machine is simulated with ``SALKIT_CPUINFO=FILE``, a cpuinfo text
read instead of ``/proc/cpuinfo`` (OpenVINO is then not asked: it describes the real CPU). Only
the decisions change: the kernels that run are the real CPU's (OpenVINO ignores a bf16 hint
where the CPU has no bf16 units).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import platform
from pathlib import Path

from salkit.base.errors import SalkitError

DISABLE_ENV = "SALKIT_CPU_DISABLE"
CPUINFO_ENV = "SALKIT_CPUINFO"
PROC_CPUINFO = "/proc/cpuinfo"
FLAGS = ("amx_bf16", "amx_int8", "avx512_bf16", "avx512_vnni", "avx_vnni", "avx512f", "avx2")
# A capability name in SALKIT_CPU_DISABLE turns off every flag that provides it.
_GROUPS = {
    "bf16": ("amx_bf16", "avx512_bf16"),
    "int8_vnni": ("amx_int8", "avx512_vnni", "avx_vnni"),
    "int8": ("amx_int8", "avx512_vnni", "avx_vnni", "avx2"),
    "amx": ("amx_bf16", "amx_int8"),
    "avx512": ("avx512f", "avx512_bf16", "avx512_vnni"),
}


@dataclasses.dataclass(frozen=True)
class CpuInfo:
    model: str  # "Intel(R) Xeon(R) Platinum 8480+", "AMD EPYC" …
    flags: frozenset[str]  # the subset of FLAGS this CPU has (after forced-off ones are removed)
    disabled: frozenset[str] = frozenset()  # flags forced off
    openvino_caps: tuple[str, ...] | None = None  # OpenVINO's OPTIMIZATION_CAPABILITIES, when asked

    @property
    def bf16(self) -> bool:
        native = bool(self.flags & {"amx_bf16", "avx512_bf16"})
        if self.openvino_caps is not None and "BF16" not in self.openvino_caps:
            return False
        return native

    @property
    def int8_vnni(self) -> bool:
        return bool(self.flags & {"amx_int8", "avx512_vnni", "avx_vnni"})

    @property
    def int8(self) -> bool:
        return self.int8_vnni or "avx2" in self.flags

    def supports(self, precision: str) -> bool:
        """Whether ``precision`` ("fp32", "bf16", "int8") runs natively here."""
        return {"fp32": True, "bf16": self.bf16, "int8": self.int8}.get(precision, False)

    def lacks(self, precision: str) -> str:
        """Why ``precision`` is not native here, in one clause ("" when it is)."""
        if self.supports(precision):
            return ""
        forced = " (forced off by " + DISABLE_ENV + ")" if self.disabled & set(_GROUPS.get(precision, ())) else ""
        need = {"bf16": "AMX-BF16 or AVX512-BF16", "int8": "AVX2, AVX-VNNI, AVX512-VNNI or AMX-INT8"}.get(precision)
        if need is None:
            return f"precision {precision!r} is not a CPU precision"
        return f"{precision} needs {need}, which this CPU ({self.model}) lacks{forced}"

    def summary(self) -> str:
        return f"{self.model} [{' '.join(sorted(self.flags)) or 'no vector extensions'}]"

    def to_json(self) -> dict[str, object]:
        return {
            "model": self.model, "flags": sorted(self.flags), "disabled": sorted(self.disabled),
            "bf16": self.bf16, "int8": self.int8, "int8_vnni": self.int8_vnni,
            "openvino_caps": list(self.openvino_caps) if self.openvino_caps is not None else None,
        }


def _read_cpuinfo(path: Path = Path(PROC_CPUINFO)) -> tuple[str, set[str]]:
    model, flags = "", set()
    try:
        text = path.read_text(errors="replace")
    except OSError:
        if str(path) != PROC_CPUINFO:  # a file the user named (SALKIT_CPUINFO): say so, do not guess
            raise SalkitError(f"{CPUINFO_ENV}={path}: cannot read it (a cpuinfo text file)") from None
        return platform.processor() or platform.machine() or "unknown CPU", flags
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:  # "Features" on Arm
            flags = set(value.split())
    return model or platform.processor() or "unknown CPU", flags


def _expand(disable: str | None) -> frozenset[str]:
    names = {part.strip().lower() for part in (disable or "").split(",") if part.strip()}
    unknown = sorted(names - set(_GROUPS) - set(FLAGS))
    if unknown:  # a typo would otherwise simulate nothing and the run would look like a real test of it
        raise SalkitError(f"{DISABLE_ENV}={disable}: unknown capability {', '.join(map(repr, unknown))}; known names: "
                          f"{', '.join(_GROUPS)} or the flags {', '.join(FLAGS)}")
    out: set[str] = set()
    for name in names:
        out.update(_GROUPS.get(name, (name,)))
    return frozenset(out)


def _openvino_caps() -> tuple[str, ...] | None:
    try:
        import openvino
    except ImportError:
        return None
    try:
        return tuple(str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    except Exception:  # no CPU plugin or an older property set: answer from the flags alone
        return None


@functools.lru_cache(maxsize=8)
def _cached(disable: str, ask_openvino: bool, cpuinfo: str) -> CpuInfo:
    model, flags = _read_cpuinfo(Path(cpuinfo))
    off = _expand(disable)
    caps = _openvino_caps() if ask_openvino else None
    if caps is not None and off & set(_GROUPS["bf16"]):
        caps = tuple(c for c in caps if c != "BF16")
    return CpuInfo(model=model, flags=frozenset((flags & set(FLAGS)) - off), disabled=off, openvino_caps=caps)


def cpu_info(disable: str | None = None, *, ask_openvino: bool = False, cpuinfo: str | None = None) -> CpuInfo:
    """This CPU's model and flags; ``disable`` (default: ``$SALKIT_CPU_DISABLE``) forces some off,
    ``cpuinfo`` (default: ``$SALKIT_CPUINFO``, else /proc/cpuinfo) is the text they are read from."""
    if disable is None:
        disable = os.environ.get(DISABLE_ENV, "")
    if cpuinfo is None:
        cpuinfo = os.environ.get(CPUINFO_ENV) or PROC_CPUINFO
    # OpenVINO's answer is about the real CPU: asking it would undo a simulated one.
    return _cached(disable, ask_openvino and cpuinfo == PROC_CPUINFO, cpuinfo)


__all__ = ["CPUINFO_ENV", "CpuInfo", "DISABLE_ENV", "FLAGS", "cpu_info"]
