"""Shared test set-up: real Quick, Draw! subsets from the mirror, and an isolated cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "quickdraw"


def pytest_configure(config):
    # Tests read the local mirror unless the caller points elsewhere, and never a real bucket.
    mirror = os.environ.setdefault("QUICKDRAW_MIRROR", str(SHARED_MIRROR))
    if "://" not in mirror:
        # tox passes "{toxinidir}/../shared/quickdraw"; the loaders report normalised paths.
        os.environ["QUICKDRAW_MIRROR"] = os.path.normpath(mirror)
    # Two xdist workers on two cores: one torch thread each avoids oversubscription.
    os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def mirror() -> Path:
    path = Path(os.environ["QUICKDRAW_MIRROR"])
    if not (path / "full" / "simplified").is_dir():
        pytest.fail(f"QUICKDRAW_MIRROR={path} is not a Quick, Draw! mirror folder")
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache dir so tests never share or leak cached files."""
    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))
