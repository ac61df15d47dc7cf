"""Benchmarks live in ``bench_*.py`` files: collect them when pytest is pointed at benchmarks/."""

from __future__ import annotations

import pytest


def pytest_collect_file(file_path, parent):
    explicit = parent.session.isinitpath(file_path)  # pytest collects those itself
    if file_path.suffix == ".py" and file_path.name.startswith("bench_") and not explicit:
        return pytest.Module.from_parent(parent, path=file_path)
    return None
