"""Shared test set-up: the `gpu` marker, thread limits, and cross-area fixtures.

Fixtures used by more than one area live in tests/fixtures/<area>.py and are imported here.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

# Two cores: keep every library from oversubscribing them when pytest runs.
os.environ.setdefault("OMP_NUM_THREADS", "2")

# The fixtures pytest finds by name: star imports of the fixture modules and names imported for
# pytest alone are how conftest shares them (F403, F401).
from tests.fixtures.bundles import *  # noqa: F403 — fixture module, see above
from tests.fixtures.cpus import *  # noqa: F403 — fixture module, see above
from tests.fixtures.data import *  # noqa: F403 — fixture module, see above
from tests.fixtures.models import *  # noqa: F403 — fixture module, see above
from tests.fixtures.qefpn_models import *  # noqa: F403 — fixture module, see above
from tests.runtime.toy_fixtures import toy_coop, toy_qefpn  # noqa: F401 — session fixtures, see above

if os.environ.get("SALKIT_TEST_CPU"):  # the whole session on one simulated CPU (tests/fixtures/cpus.py)
    import tempfile
    from pathlib import Path

    from tests.fixtures.cpus import CPU_SETS, write_cpuinfo

    if os.environ["SALKIT_TEST_CPU"] not in CPU_SETS:
        raise pytest.UsageError(f"SALKIT_TEST_CPU={os.environ['SALKIT_TEST_CPU']}: choose one of {', '.join(CPU_SETS)}")
    os.environ["SALKIT_CPUINFO"] = str(write_cpuinfo(os.environ["SALKIT_TEST_CPU"], Path(tempfile.mkdtemp(prefix="salkit-cpu-"))))


def _cuda_device_present() -> bool:
    if shutil.which("nvidia-smi") is None:
        return False
    try:
        result = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_device_present():
        return
    skip_gpu = pytest.mark.skip(reason="needs an NVIDIA GPU (none on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
