"""Shared fixtures. Tests run offline on CPU; data is made by the test (seeded) or is a real file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_FILM = ROOT.parent / "shared" / "data" / "real_film"


def pytest_configure(config: pytest.Config) -> None:
    # The suite predicts with eager PyTorch unless told otherwise (CORRELNET_RUNTIME=openvino pytest runs
    # it all through OpenVINO): compiling a head per tiny test model costs more than the tests save.
    # tests/test_runtime.py checks every runtime against eager explicitly.
    os.environ.setdefault("CORRELNET_RUNTIME", "eager")


@pytest.fixture
def real_film_dir() -> Path:
    """../shared/data/real_film (1903/1906 footage, 480x368); skips where it is absent."""
    if not (REAL_FILM / "the_great_train_robbery").is_dir():
        pytest.skip(f"real film footage not found at {REAL_FILM}")
    return REAL_FILM


@pytest.fixture
def postgres_url() -> str:
    """SQLAlchemy URL of a real PostgreSQL server (CORRELNET_TEST_POSTGRES_URL); skips where unset."""
    url = os.environ.get("CORRELNET_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("CORRELNET_TEST_POSTGRES_URL is not set: PostgreSQL tests need a server (.ci/run sets it)")
    return url
