"""Session fixtures for the runtime tests: toy bundles (see toy_bundles.py) and their torch modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from salkit.runtime.bundle import Manifest, load_bundle
from tests.runtime.toy_bundles import ToyCoop, ToyQEFPN, build_coop_bundle, build_qefpn_bundle


@dataclass
class Toy:
    model: torch.nn.Module
    path: Path
    manifest: Manifest


@pytest.fixture(scope="session")
def toy_coop(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    model = ToyCoop(seed=0).eval()
    path = tmp_path_factory.mktemp("toy") / "coop"
    build_coop_bundle(path, model)
    return Toy(model, path, load_bundle(path))


@pytest.fixture(scope="session")
def toy_qefpn(tmp_path_factory: pytest.TempPathFactory) -> Toy:
    model = ToyQEFPN(seed=0).eval()
    path = tmp_path_factory.mktemp("toy") / "qefpn"
    build_qefpn_bundle(path, model)
    return Toy(model, path, load_bundle(path))
