"""The fresh-machine path of issue 11: a clone with no mirror beside it runs `tox -e bench`.

There the data come over HTTP from Google's bucket; here the loopback server
(``tests/http_mirror.py``) stands in for the bucket, serving the shared mirror in its layout.
So the default comparison's data stage and a benchmark run against it with an empty cache,
and the configs and benchmarks are checked to name Google categories only -- nothing that
exists only in a local mirror, no folder listings.
"""

from __future__ import annotations

import ast
import configparser
import importlib.util
import itertools
import json
import os
import subprocess
import sys
import tomllib
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from sketchgen.comparison.config import load_config
from sketchgen.comparison.real import load_real
from sketchgen.data import sources as data

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = REPO / "benchmarks"
DEFAULT_CONFIG = REPO / "configs" / "cpu-small.toml"


def benchmark_common():
    """``benchmarks/common.py`` as a module (the benchmarks import it as ``common``)."""
    spec = importlib.util.spec_from_file_location("bench_common", BENCHMARKS / "common.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def over_http(server, tmp_path, monkeypatch):
    """``QUICKDRAW_MIRROR`` pointing at the loopback server, and an empty cache."""
    monkeypatch.setenv("QUICKDRAW_MIRROR", server.url)
    monkeypatch.setenv("SKETCHGEN_CACHE", str(tmp_path / "cache"))
    return server


def requested_files(server) -> set[str]:
    return {urllib.parse.unquote(entry["path"]) for entry in server.requests}


def simplified_paths(categories) -> set[str]:
    return {f"/full/simplified/{name}.ndjson" for name in categories}


# -- (a) the default comparison's data stage --------------------------------------------------


def test_default_comparison_data_come_over_http_as_from_the_mirror(over_http, mirror,
                                                                    monkeypatch):
    config = load_config(DEFAULT_CONFIG)
    from_http = load_real(config)
    assert requested_files(over_http) == simplified_paths(config.categories)

    monkeypatch.setenv("QUICKDRAW_MIRROR", str(mirror))
    from_folder = load_real(config)
    assert from_http.class_names == from_folder.class_names == config.categories
    assert len(from_http.train_images) == config.per_class * len(config.categories)
    np.testing.assert_array_equal(from_http.train_images, from_folder.train_images)
    np.testing.assert_array_equal(from_http.train_labels, from_folder.train_labels)
    for name in config.categories:
        for held_out in ("valid", "test", "second"):
            np.testing.assert_array_equal(getattr(from_http, held_out)[name],
                                          getattr(from_folder, held_out)[name])


# -- (b) the benchmarks' data ---------------------------------------------------------------


def test_benchmark_drawings_come_over_http_as_the_files_own_lines(over_http, mirror):
    common = benchmark_common()
    lines = common.first_lines()
    assert requested_files(over_http) == simplified_paths(common.CATEGORIES)
    assert len(lines) == len(common.CATEGORIES) * common.PER_CATEGORY

    by_category = {name: [] for name in common.CATEGORIES}
    for line in lines:
        by_category[json.loads(line)["word"]].append(line)
    for name, got in by_category.items():
        with open(mirror / "full" / "simplified" / f"{name}.ndjson", "rb") as stream:
            assert got == list(itertools.islice(stream, common.PER_CATEGORY)), name
    # interleaved, so that a prefix of the mix (the 256 px render benchmark's) has them all
    first = {json.loads(line)["word"] for line in lines[: len(common.CATEGORIES)]}
    assert first == set(common.CATEGORIES)


def test_a_benchmark_runs_against_the_server_with_an_empty_cache(over_http, tmp_path):
    report = tmp_path / "bench.json"
    bench = "benchmarks/bench_render.py::test_parse_orjson_vs_ndjson_package"
    # not as an xdist worker (PYTEST_XDIST_WORKER would make pytest-benchmark disable itself)
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", bench, "-q", "-p", "no:cacheprovider",
         f"--benchmark-json={report}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=50,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    (entry,) = json.loads(report.read_text())["benchmarks"]
    common = benchmark_common()
    assert entry["extra_info"]["lines"] == len(common.CATEGORIES) * common.PER_CATEGORY
    assert entry["extra_info"]["orjson_speedup"] > 0
    assert requested_files(over_http) == simplified_paths(common.CATEGORIES)


# -- (c) Google names only, no mirror-only paths, no folder listings ---------------------------


@pytest.mark.parametrize("config", sorted((REPO / "configs").glob("*.toml")), ids=lambda p: p.name)
def test_configs_name_google_categories_only(config):
    categories = tomllib.loads(config.read_text())["categories"]
    assert [name for name in categories if name not in data.CATEGORIES] == []


def test_benchmarks_use_a_small_fixed_set_of_google_categories():
    common = benchmark_common()
    assert set(common.CATEGORIES) <= set(data.CATEGORIES)
    assert 1000 <= len(common.CATEGORIES) * common.PER_CATEGORY <= 5000
    with pytest.raises(ValueError, match="not among the benchmark categories"):
        common.real_drawings(["cat"])  # a benchmark cannot reach outside the fixed set


# What would tie a benchmark to a local mirror: its folders, listing a folder, a mirror path.
MIRROR_ONLY = ("extra/", "full/", "sketchrnn/", "numpy_bitmap", "MIRROR /", "mirror=",
               ".glob(", ".rglob(", ".iterdir(", "listdir(", "scandir(", "os.walk(")
LOADERS = {"load_drawings", "load_bitmaps", "resolve", "read_sketch_npz"}


def data_calls(tree: ast.AST) -> set[str]:
    """Names of the loaders (``LOADERS``: ``sketchgen.data``'s, ``rasterize.sketch_npz``'s) a
    module calls."""
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(node.func.id)
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "data"):
            called.add(node.func.attr)
    return called & LOADERS


@pytest.mark.parametrize("source", sorted(BENCHMARKS.glob("*.py")), ids=lambda p: p.name)
def test_benchmarks_read_data_only_by_category_name(source):
    text = source.read_text()
    tree = ast.parse(text)
    assert [pattern for pattern in MIRROR_ONLY if pattern in text] == []
    strings = {node.value for node in ast.walk(tree)
               if isinstance(node, ast.Constant) and isinstance(node.value, str)}
    assert {"full", "extra", "sketchrnn"} & strings == set()
    if source.name != "common.py":  # data come through common's loaders only
        assert data_calls(tree) == set()


# -- (d) a clone with no mirror beside it ----------------------------------------------------


def tox_default_mirror() -> str:
    tox = configparser.ConfigParser(interpolation=None)
    tox.read(REPO / "tox.ini")
    setenv = dict(line.split(" = ", 1) for line in tox["testenv"]["setenv"].strip().splitlines())
    return setenv["QUICKDRAW_MIRROR"]


def test_a_clone_without_the_mirror_beside_it_reads_googles_bucket(tmp_path, monkeypatch,
                                                                    capsys):
    default = tox_default_mirror()
    assert default == "{env:QUICKDRAW_MIRROR:{toxinidir}/../shared/quickdraw}"
    clone = tmp_path / "clone"
    clone.mkdir()
    missing = default.removeprefix("{env:QUICKDRAW_MIRROR:").removesuffix("}")
    monkeypatch.setenv("QUICKDRAW_MIRROR", missing.replace("{toxinidir}", str(clone)))

    assert data.resolve_mirror(None) == data.resolve_mirror(None) == data.GOOGLE_BUCKET
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1 and "shared/quickdraw" in said[0] and "bucket" in said[0], said
