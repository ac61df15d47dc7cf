"""The `sketchgen rasterize` contract (issue 2): layout, order, exit codes, FILE:LINE errors."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from rasterize.drawings import read_ndjson
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
