"""Benchmarks live in ``bench_*.py`` files: collect them when pytest is pointed at benchmarks/.

Data comes from ``$QUICKDRAW_MIRROR``, by default (as in tox.ini) the mirror beside the
checkout, ``../shared/quickdraw``; where that folder does not exist ``sketchgen.data.sources``
says so in one line and reads Google's bucket instead.

Benchmarks marked ``report`` feed the comparison report: ``tox -e bench`` runs only those
(``pytest benchmarks -m report``, a budget of 3 minutes on a 2-core CPU with cold caches);
``tox -e benchmarks`` runs them all.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_MIRROR = Path(__file__).resolve().parents[1].parent / "shared" / "quickdraw"


def pytest_configure(config):
    os.environ.setdefault("QUICKDRAW_MIRROR", str(SHARED_MIRROR))
    config.addinivalue_line(
        "markers", "report: in the comparison report's subset (tox -e bench: pytest -m report)"
    )


def pytest_collect_file(file_path, parent):
    explicit = parent.session.isinitpath(file_path)  # pytest collects those itself
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not explicit:
        return pytest.Module.from_parent(parent, path=file_path)
    return None
