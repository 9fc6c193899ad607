"""CPU classes of ``make bench``'s records, and the records kept per class (``docs/bench/<class>.json``).

A speed ratio means something only within one run on one CPU, and which plans exist at all
depends on the CPU's matrix units. So each class of CPU keeps its latest records: a run
replaces its own class's file and leaves the others, and the README shows one table per class.
A class is the widest vector or matrix unit salkit uses (AMX, AVX-512, AVX2) and the product
family named in the model string (Xeon, EPYC …): "AMX Xeon", "AVX-512 Xeon", "AVX2 EPYC".

A class file: ``{"cpu_class", "label", "records": [sal-runtime bench records], "gates":
[experiments.gate_check records]}``, the records as ``sal-runtime bench --json`` wrote them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from salkit.base.atomic import atomic_write_text
from salkit.base.errors import SalkitError

# Widest first: a CPU with AMX also has AVX-512 and AVX2.
# AVX-512 with BF16 (Zen 4, Cooper Lake) is a class of its own: bf16 plans exist there and not on other AVX-512 CPUs.
TIERS = (("amx", "AMX", ("amx_bf16", "amx_int8")), ("avx512bf16", "AVX-512 BF16", ("avx512_bf16",)),
         ("avx512", "AVX-512", ("avx512f",)), ("avx2", "AVX2", ("avx2",)))
FAMILIES = ("Xeon", "EPYC", "Core", "Ryzen", "Opteron")


def cpu_class(record: Mapping[str, Any]) -> tuple[str, str]:
    """(file key, label) of the record's CPU, e.g. ("avx2-epyc", "AVX2 EPYC")."""
    cpu = record.get("machine", {}).get("cpu") or {}
    flags = set(cpu.get("flags") or ())
    key, label = next(((k, name) for k, name, needs in TIERS if flags & set(needs)), ("x86", "no AVX2"))
    model = str(cpu.get("model") or "")
    family = next((f for f in FAMILIES if f.lower() in model.lower()), None)
    return (f"{key}-{family.lower()}", f"{label} {family}") if family else (key, f"{label} CPU")


def keep(records: Sequence[Mapping[str, Any]], gates: Sequence[Mapping[str, Any]], folder: Path) -> Path:
    """Replace the class file of the records' CPU with them (all from one CPU class)."""
    classes = {cpu_class(r) for r in records}
    if len(classes) != 1:
        raise SalkitError(f"--keep takes the records of one CPU class, got {', '.join(sorted(c[1] for c in classes)) or 'none'}")
    (key, label), = classes
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{key}.json"
    atomic_write_text(path, json.dumps({"cpu_class": key, "label": label, "records": list(records), "gates": list(gates)},
                                       indent=1, sort_keys=True) + "\n")
    return path


def newest(entry: Mapping[str, Any]) -> str:
    return max((str(r.get("recorded_utc", "")) for r in entry["records"]), default="")


def kept(folder: Path) -> list[dict[str, Any]]:
    """Every class file in ``folder``, the class measured most recently first."""
    entries = []
    for path in sorted(folder.glob("*.json")):
        try:
            entry = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise SalkitError(f"kept bench records {path}: {exc}") from None
        if not isinstance(entry, dict) or not entry.get("records"):
            raise SalkitError(f"{path} is not a class file of kept bench records (needs records)")
        entries.append(entry)
    return sorted(entries, key=newest, reverse=True)


__all__ = ["cpu_class", "keep", "kept", "newest"]
