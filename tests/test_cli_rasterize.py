"""The `sketchgen rasterize` contract (issue 2): layout, order, exit codes, FILE:LINE errors."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from rasterize.geometry import GOOGLE_SIZE
from rasterize.ndjson_reader import parse_line, read_ndjson
from rasterize.render import render
from sketchgen.cli import main


def head_lines(path, count):
    with open(path, "rb") as stream:
        return b"".join(itertools.islice(stream, count))


@pytest.fixture
def files(mirror, tmp_path):
    simplified = mirror / "full" / "simplified"
    good = tmp_path / "apple.ndjson"
    good.write_bytes(head_lines(simplified / "apple.ndjson", 40))
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(head_lines(simplified / "cat.ndjson", 3) + b'{"word": "cat"}\n{oops\n')
    return good, bad, simplified / "fish.ndjson"


def test_writes_googles_layout_in_input_order(files, tmp_path, capsys):
    good, _, fish = files
    out = tmp_path / "out.npy"
    assert main(["rasterize", str(good), str(fish), "-o", str(out), "--size", "32"]) == 0
    drawings = [*read_ndjson(good), *read_ndjson(fish)]
    rows = np.load(out)
    assert rows.shape == (len(drawings), 32 * 32) and rows.dtype == np.uint8
    np.testing.assert_array_equal(rows, render(drawings, size=32).reshape(len(drawings), -1))
    assert f"wrote {len(drawings)} drawings (32x32)" in capsys.readouterr().out


def test_bad_line_exits_non_zero_with_file_and_line_on_stderr(files, tmp_path):
    good, bad, _ = files
    out = tmp_path / "out.npy"
    command = [sys.executable, "-m", "sketchgen", "rasterize", str(good), str(bad), "-o", str(out)]
    done = subprocess.run([*command, "--workers", "2"], capture_output=True, text=True)
    assert done.returncode == 1
    assert f"{bad}:4: record has no 'drawing' key" in done.stderr.splitlines()
    assert not out.exists()


def test_skip_exits_zero_and_says_how_many_lines_it_skipped(files, tmp_path, capsys):
    good, bad, _ = files
    out = tmp_path / "out.npy"
    code = main(["rasterize", str(bad), str(good), "-o", str(out), "--on-error", "skip"])
    assert code == 0
    assert np.load(out).shape == (3 + 40, 784)
    assert "skipped 2 lines (missing-drawing: 1, bad-json: 1)" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--workers", "0"], "--workers must be at least 1"),
        (["--size", "0"], "--size must be at least 1"),
        (["-o", "out.png"], "must be a .npy file"),
    ],
)
def test_bad_arguments_are_one_line_errors(files, tmp_path, capsys, extra, message, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["rasterize", str(files[0]), "-o", "out.npy", *extra]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("sketchgen rasterize: error:") and message in error
    assert "\n" not in error and not list(tmp_path.glob("*.npy"))


def test_a_missing_input_is_a_usage_error(tmp_path, capsys):
    assert main(["rasterize", str(tmp_path / "nope.ndjson"), "-o", str(tmp_path / "o.npy")]) == 2
    assert "no such input file" in capsys.readouterr().err


def child_processes(pid: int) -> list[int]:
    """Live children of ``pid``, from the process table in /proc."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (command)"
        except (OSError, IndexError):
            continue  # it ended while we looked
        if int(fields[1]) == pid and fields[0] != "Z":
            children.append(int(stat.parent.name))
    return children


def is_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (an ended child nobody reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_a_killed_run_takes_its_workers_along_and_the_next_leaves_no_temporaries(
    mirror, tmp_path
):
    """Issue 10, item 6: SIGKILL of the job alone (not its process group) mid-run."""
    base = head_lines(mirror / "full" / "simplified" / "eye.ndjson", 2000)
    drawings = [parse_line(line) for line in base.splitlines()]
    big = tmp_path / "big.ndjson"
    big.write_bytes(base * 8)  # real lines, repeated: long enough to be killed mid-run
    out = tmp_path / "out.npy"
    command = [sys.executable, "-m", "sketchgen", "rasterize", str(big), "-o", str(out)]
    job = subprocess.Popen([*command, "--workers", "2"], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    workers: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while job.poll() is None and time.monotonic() < deadline:
            workers = child_processes(job.pid)
            shard = list((tmp_path / ".out.npy.parts").glob(".*.tmp-*"))
            if len(workers) == 2 and shard and shard[0].stat().st_size > 4096:
                break  # both workers are up and rows are being written
            time.sleep(0.02)
        job.kill()
        job.wait()
        assert job.returncode == -signal.SIGKILL, "the job ended before it could be killed"
        assert len(workers) == 2
        deadline = time.monotonic() + 30  # a bound, not a speed: they go at once on Linux
        while any(map(is_running, workers)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in workers if is_running(pid)], "orphaned workers"
    finally:
        for pid in filter(is_running, workers):  # whatever happened, leave nothing running
            os.kill(pid, signal.SIGKILL)

    stale = tmp_path / f".out.npy.tmp-{job.pid}"  # what a kill while assembling leaves
    stale.write_bytes(b"\0" * (1 << 20))
    not_ours = [tmp_path / f".out.npy.tmp-{os.getppid()}",  # a live process's
                tmp_path / f"out.npy.tmp-{job.pid}", tmp_path / f".other.npy.tmp-{job.pid}",
                tmp_path / f".out.npy.tmp-{job.pid}.keep", tmp_path / ".out.npy.tmp-x1"]
    for path in not_ours:
        path.write_bytes(b"a user's file")
    assert main(["rasterize", str(big), "-o", str(out), "--workers", "2"]) == 0
    expected = render(drawings).reshape(len(drawings), -1)
    np.testing.assert_array_equal(np.load(out), np.tile(expected, (8, 1)))
    assert not stale.exists() and not (tmp_path / ".out.npy.parts").exists()
    left = sorted(p for p in tmp_path.rglob("*") if ".tmp-" in p.name)
    assert left == sorted(not_ours)
    assert all(path.read_bytes() == b"a user's file" for path in not_ours)


ORPHAN = """
import os, subprocess, sys, time
from pathlib import Path
import rasterize.parallel as parallel
if sys.argv[1] == "parent":
    subprocess.Popen([sys.executable, __file__, "worker", str(os.getpid()), sys.argv[2]])
else:
    parallel._killed_with_parent = lambda: False  # as on a system without prctl
    parallel._die_with_parent(int(sys.argv[2]))
    Path(sys.argv[3]).write_text(str(os.getpid()))
time.sleep(120)
"""


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_without_prctl_a_worker_still_notices_its_parent_died(tmp_path):
    script, ready = tmp_path / "orphan.py", tmp_path / "worker.pid"
    script.write_text(ORPHAN)
    parent = subprocess.Popen([sys.executable, str(script), "parent", str(ready)])
    worker = None
    try:
        deadline = time.monotonic() + 60
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        worker = int(ready.read_text())
        assert is_running(worker)
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 30  # a bound: it polls every _PARENT_POLL_S
        while is_running(worker) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not is_running(worker)
    finally:
        parent.kill()
        if worker is not None and is_running(worker):
            os.kill(worker, signal.SIGKILL)


def test_an_existing_output_is_replaced_only_with_overwrite(files, tmp_path, capsys):
    good, _, _ = files
    out = tmp_path / "mine.npy"
    out.write_bytes(b"the user's own file")
    assert main(["rasterize", str(good), "-o", str(out)]) == 2
    error = capsys.readouterr().err.strip()
    assert str(out) in error and "--overwrite" in error and "\n" not in error
    assert out.read_bytes() == b"the user's own file"
    assert main(["rasterize", str(good), "-o", str(out), "--overwrite"]) == 0
    assert np.load(out).shape == (40, GOOGLE_SIZE * GOOGLE_SIZE)
