"""Shared test set-up: real Quick, Draw! subsets from the mirror, and an isolated cache."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from http_mirror import serve  # tests/ is on sys.path (rootdir conftest)

from rasterize.ndjson_reader import read_ndjson

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


@pytest.fixture
def server(mirror):
    """The mirror over HTTP on a loopback port (``tests/http_mirror.py``)."""
    with serve(mirror) as httpd:
        yield httpd


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    """A cache folder of this test's own, empty at the start (``SKETCHGEN_CACHE``)."""
    path = tmp_path / "cache"
    monkeypatch.setenv("SKETCHGEN_CACHE", str(path))
    return path


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session gets its own cache dir so tests never share or leak cached files."""
    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


# Rows of full/numpy_bitmap/<category>.npy whose simplified line is in the mirror (its README).
BITMAP_ROWS = {"apple": 100, "eye": 250, "bicycle": 25, "cat": 25, "diamond": 25, "fish": 25}


def head(path, count):
    """The first ``count`` drawings of an ndjson file."""
    return list(itertools.islice(read_ndjson(path), count))


def imported_by(statements: str, modules: tuple[str, ...]) -> list[str]:
    """Which of ``modules`` a fresh interpreter holds after running ``statements``."""
    code = (f"import sys\n{statements}\n"
            f"print(' '.join(sorted(m for m in {modules!r} if m in sys.modules)))")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.split()


@pytest.fixture(scope="session")
def google_pairs(mirror):
    """(simplified drawings, Google's 28 px bitmaps) for the 450 rows that line up."""
    drawings, bitmaps = [], []
    for category, rows in BITMAP_ROWS.items():
        drawings += head(mirror / "full" / "simplified" / f"{category}.ndjson", rows)
        npy = np.load(mirror / "full" / "numpy_bitmap" / f"{category}.npy", mmap_mode="r")
        bitmaps.append(np.asarray(npy[:rows]).reshape(rows, 28, 28))
    return drawings, np.concatenate(bitmaps)


def train_with_torchrun(args: list[str], processes: int = 2) -> None:
    """``sketchgen train *args`` launched by torchrun on ``processes`` CPU (gloo) ranks."""
    launched = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
         str(processes), "-m", "sketchgen", "train", *args], capture_output=True, text=True)
    assert launched.returncode == 0, launched.stderr[-2000:]
