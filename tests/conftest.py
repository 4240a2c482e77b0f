"""Shared test set-up: hypothesis profile, paths, the golden-stream helper module, and the
embedded broker (one per session) of the integration and deploy tests."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from streams.broker import EmbeddedBroker

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = ROOT / "tests" / "data" / "golden"

# shared builders and strategies: ``import cw_strategies`` (tests/property/cw_strategies.py)
sys.path.insert(0, str(ROOT / "tests" / "property"))

settings.register_profile(
    "churnwatch",
    deadline=None,
    max_examples=100,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
settings.load_profile("churnwatch")


def load_golden_module() -> ModuleType:
    """``tests/data/golden/regenerate.py``: the scenarios and the replay the goldens use."""
    spec = importlib.util.spec_from_file_location(
        "churnwatch_golden_regenerate", GOLDEN_DIR / "regenerate.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden() -> ModuleType:
    return load_golden_module()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Kafka-protocol broker (tansu), shared by every test that asks for it."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(log=log) as b:
        yield b
