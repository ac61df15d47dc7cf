"""Rendering throughput, each figure a ratio to a baseline measured in the same run.

* exact render vs Google's per-point cairo loop (``render_reference``) at 28, 64, 256 px;
* the multi-process streaming rasterizer with every core vs one worker;
* the streaming pipeline (parse + render + write) vs rendering already-parsed drawings;
* parsing ndjson with orjson vs the ``ndjson`` package (why the suite uses orjson).

Ratios go to ``benchmark.extra_info`` (read by ``sketchgen.report.tables``' throughput table).
Timings for a ratio alternate between the two sides and keep each side's best round, so a
burst of load on a shared machine hits both alike. Run: ``pytest benchmarks/bench_render.py``.
"""

from __future__ import annotations

import os
from pathlib import Path

import ndjson
import numpy as np
import orjson
import pytest
from common import best_times, first_lines, record

from rasterize.geometry import GOOGLE_SIZE
from rasterize.ndjson_reader import read_ndjson
from rasterize.parallel import RasterizeOptions, rasterize_files
from rasterize.render import render, render_reference

TARGETS = {"exact_vs_loop": 1.0, "two_processes_vs_loop": 1.8, "streaming_vs_render": 0.8}


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    return first_lines()  # 23 categories x 180 = 4140 drawings


@pytest.fixture(scope="module")
def mix_file(lines, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("mix") / "mix.ndjson"
    path.write_bytes(b"".join(lines))
    return path


@pytest.fixture(scope="module")
def drawings(mix_file):
    return list(read_ndjson(mix_file))


@pytest.mark.report
@pytest.mark.benchmark(group="render")
@pytest.mark.parametrize("size, count", [(GOOGLE_SIZE, 4140), (64, 2070), (256, 690)])
def test_render_vs_per_point_loop(benchmark, drawings, size, count):
    batch = drawings[:count]
    fast, loop = best_times(lambda: render(batch, size=size), lambda: render_reference(batch, size))
    benchmark.pedantic(render, args=(batch,), kwargs={"size": size}, rounds=3, iterations=1)
    ratio = loop / fast
    record(
        benchmark,
        size=size,
        drawings=len(batch),
        drawings_per_s=len(batch) / fast,
        loop_drawings_per_s=len(batch) / loop,
        speedup_vs_loop=ratio,
        target=TARGETS["exact_vs_loop"],
        meets_target=ratio >= TARGETS["exact_vs_loop"],
    )


def rasterize(path: Path, out: Path, workers: int) -> None:
    rasterize_files([path], out, RasterizeOptions(workers=workers))


@pytest.mark.report
@pytest.mark.benchmark(group="parallel")
def test_multiprocess_speedup(benchmark, mix_file, drawings, tmp_path):
    cores = os.cpu_count() or 1
    out = tmp_path / "out.npy"
    many, one, loop = best_times(
        lambda: rasterize(mix_file, out, cores),
        lambda: rasterize(mix_file, out, 1),
        lambda: render_reference(drawings),
        rounds=3,
    )
    benchmark.pedantic(rasterize, args=(mix_file, out, cores), rounds=2, iterations=1)
    record(
        benchmark,
        cores=cores,
        drawings=len(drawings),
        drawings_per_s=len(drawings) / many,
        speedup_vs_one_worker=one / many,
        # the whole job (parse + render + write) on every core vs the bare render loop
        speedup_vs_loop=loop / many,
        target_vs_loop=TARGETS["two_processes_vs_loop"],
        meets_target=loop / many >= TARGETS["two_processes_vs_loop"],
    )


@pytest.mark.report
@pytest.mark.benchmark(group="streaming")
def test_streaming_vs_render_alone(benchmark, mix_file, drawings, tmp_path):
    cores = os.cpu_count() or 1
    out = tmp_path / "out.npy"
    alone, stream_one, stream_all = best_times(
        lambda: render(drawings),
        lambda: rasterize(mix_file, out, 1),
        lambda: rasterize(mix_file, out, cores),
        rounds=3,
    )
    benchmark.pedantic(rasterize, args=(mix_file, out, 1), rounds=2, iterations=1)
    np.testing.assert_array_equal(np.load(out), render(drawings).reshape(len(drawings), -1))
    record(
        benchmark,
        drawings=len(drawings),
        render_alone_per_s=len(drawings) / alone,
        streaming_one_core_per_s=len(drawings) / stream_one,
        streaming_vs_render_one_core=alone / stream_one,
        streaming_all_cores_vs_render_one_core=alone / stream_all,
        target=TARGETS["streaming_vs_render"],
        meets_target=alone / stream_one >= TARGETS["streaming_vs_render"],
    )


@pytest.mark.report
@pytest.mark.benchmark(group="parse")
def test_parse_orjson_vs_ndjson_package(benchmark, lines):
    text = b"".join(lines).decode()
    with_orjson, with_ndjson = best_times(
        lambda: [orjson.loads(line) for line in lines],
        lambda: ndjson.loads(text),
    )
    assert [orjson.loads(line) for line in lines] == ndjson.loads(text)
    benchmark.pedantic(lambda: [orjson.loads(line) for line in lines], rounds=5, iterations=1)
    record(
        benchmark,
        lines=len(lines),
        orjson_lines_per_s=len(lines) / with_orjson,
        ndjson_lines_per_s=len(lines) / with_ndjson,
        orjson_speedup=with_ndjson / with_orjson,
    )
