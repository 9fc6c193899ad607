"""The batch sizes a bundle is built for (``--batch MIN:OPT:MAX``): the TensorRT engines'
optimisation profile and the manifest's ``batch`` entry."""

from __future__ import annotations

import dataclasses
import re

from salkit.base.errors import SalkitError


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    min: int = 1
    opt: int = 8
    max: int = 16

    @classmethod
    def parse(cls, spec: str) -> "BatchProfile":
        match = re.fullmatch(r"\s*(\d+):(\d+):(\d+)\s*", spec or "")
        if not match:
            raise SalkitError(f"invalid batch spec {spec!r}: expected MIN:OPT:MAX, e.g. 1:8:16")
        lo, opt, hi = (int(v) for v in match.groups())
        if not 1 <= lo <= opt <= hi:
            raise SalkitError(f"invalid batch spec {spec!r}: need 1 ≤ MIN ≤ OPT ≤ MAX")
        return cls(lo, opt, hi)

    def as_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}
