"""Bad input, fuzzed (issue 6): every generated line ends in a correct render or a clear
``FILE:LINE`` error, nothing crashes and nothing is dropped silently. Bad configs and
checkpoints (issue 10, item 8): every generated TOML config and checkpoint loads, or fails in
one line naming the file and the field or key -- no traceback, no code run, and (checkpoints,
in a process with a memory cap) no huge allocation.

The full runs (over 10,000 malformed lines; thousands of configs and checkpoints) are marked
``slow`` (``tox -e fuzz``, i.e. ``pytest -m slow``); the default run checks a few hundred
lines, configs and checkpoints of the same generators. Property-based tests (hypothesis)
cover the line parser and the reader/writer on arbitrary input.
"""

from __future__ import annotations

import json
import math
import random
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import orjson
import pytest
from fuzz_cases import (
    OutcomeTally,
    Tally,
    check_config_case,
    check_file,
    check_renders,
    compare_config_case,
    fuzz_files,
    load_bases,
    train_config_case,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rasterize.drawings import Drawing, write_ndjson
from rasterize.ndjson_reader import LineError, parse_line, parse_record, read_ndjson
from rasterize.parallel import RasterizeOptions, rasterize_files
from rasterize.render import render

ALL_KINDS = {
    "bad-json", "not-an-object", "missing-drawing", "bad-drawing", "empty-drawing",
    "bad-stroke", "ragged", "non-numeric", "empty-stroke", "bad-metadata", "blank-line",
    "bad-gzip",
}  # fmt: skip


def run_fuzz(tmp_path, mirror, seed: int, files: int, workers: int) -> Tally:
    """Check every generated file through read_ndjson + render, then the whole set through
    the multi-process rasterizer (its own line framing) for the same rows and skip counts."""
    cases = fuzz_files(seed, files, load_bases(mirror))
    tally, goods = Tally(), []
    for case in cases:
        goods += check_file(tmp_path, case, tally)
    check_renders(goods)

    options = RasterizeOptions(on_error="skip", workers=workers, chunk_lines=64)
    result = rasterize_files([tmp_path / c.name for c in cases], tmp_path / "all.npy", options)
    rows = np.load(tmp_path / "all.npy")
    assert result.rows == len(goods) == len(rows)
    np.testing.assert_array_equal(rows.reshape(-1, 28, 28), render([d for d, _ in goods]))
    assert result.skipped.counts == tally.skipped
    print(tally.summary())
    return tally


def assert_everything_exercised(tally: Tally) -> None:
    assert set(tally.skipped) == ALL_KINDS
    good_names = {"verbatim", "extra-keys", "drawing-only", "shuffled-keys", "numeric-key-id",
                  "whitespace-padded", "float-coordinates", "single-point-stroke",
                  "negative-coordinates", "huge-or-tiny-coordinates"}  # fmt: skip
    assert set(tally.rendered) == good_names
    assert tally.lost_after_cut > 0 and tally.raised["none"] > 0


def test_fuzz_few_hundred_lines(tmp_path, mirror):
    tally = run_fuzz(tmp_path, mirror, seed=1, files=60, workers=1)
    assert tally.lines >= 300
    assert_everything_exercised(tally)


@pytest.mark.slow
def test_fuzz_ten_thousand_lines(tmp_path, mirror):
    tally = run_fuzz(tmp_path, mirror, seed=2, files=1700, workers=2)
    assert sum(tally.skipped.values()) >= 10_000
    assert_everything_exercised(tally)


# -- configs and checkpoints (issue 10, item 8) ------------------------------------------------

MEMORY_CAP = 3 << 30  # bytes of address space for the checkpoint run: ~3x what it needs
CHECKPOINT_REASONS = {  # every way a checkpoint is spoiled (model-config-* and config-* vary)
    "truncated", "random-bytes", "text", "empty", "zip-not-torch", "deflated", "code-payload",
    "pickle-payload", "byte-flip", "not-a-dict", "missing-key", "wrong-type", "extra-key",
    "format", "step", "model", "class-names", "huge-together", "huge-view", "rng",
    "task-missing", "task-shape", "task-dtype", "task-not-a-tensor", "task-moment",
    "task-optimizer-setting", "task-foreign-state", "task-generator",
}  # fmt: skip


def run_config_fuzz(tmp_path, seed: int, count: int) -> dict[str, OutcomeTally]:
    """``count`` generated train and compare TOML configs, each checked (library and CLI)."""
    rng = random.Random(seed)
    tallies = {"train": OutcomeTally(), "compare": OutcomeTally()}
    for index in range(count):
        kind = rng.choice(sorted(tallies))
        make = train_config_case if kind == "train" else compare_config_case
        check_config_case(tmp_path, index, make(rng, tmp_path / f"out{index}"), tallies[kind])
    for kind, tally in tallies.items():
        print(tally.summary(f"{kind} configs"))
    assert not any(tmp_path.glob("out*")), "a config started work"
    return tallies


@pytest.fixture(scope="module")
def base_checkpoints(tmp_path_factory) -> list[str]:
    """Finished two-step runs of a GAN without and with conditioning and of Sketch-RNN."""
    from sketchgen.training.config import TrainConfig
    from sketchgen.training.harness import train
    from sketchgen.training.run_folder import CHECKPOINT

    root = tmp_path_factory.mktemp("bases")
    runs = {"dcgan": {"width": 8}, "sngan": {"width": 8},
            "sketch-rnn": {"mode": "class", "enc_rnn_size": 16, "dec_rnn_size": 16,
                           "z_size": 8, "num_mixture": 3}}
    for model, options in runs.items():
        train(TrainConfig(model=model, categories=("eye", "mouth"), per_class=20, steps=2,
                          batch_size=4, out=str(root / model), device="cpu", progress=False,
                          model_options=options))
    return [str(root / model / CHECKPOINT) for model in runs]


def run_checkpoint_fuzz(tmp_path, bases: list[str], seed: int, count: int) -> OutcomeTally:
    """``count`` spoiled checkpoints checked in a child process whose address space is capped,
    so that a size that escaped its check fails the run instead of filling the machine."""
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import fuzz_cases; "
            "print(json.dumps(fuzz_cases.run_checkpoint_fuzz(json.loads(sys.argv[2]), "
            "sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))))")
    done = subprocess.run(
        [sys.executable, "-c", code, str(Path(__file__).parent), json.dumps(bases),
         str(tmp_path), str(seed), str(count)], capture_output=True, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP)))
    assert done.returncode == 0, done.stderr[-3000:]
    tally = OutcomeTally()
    for key, n in json.loads(done.stdout.splitlines()[-1]).items():
        reason, outcome = key.rsplit(":", 1)
        tally.counts[reason, outcome] = n
    print(tally.summary("checkpoints"))
    return tally


def test_fuzz_few_hundred_configs(tmp_path):
    tallies = run_config_fuzz(tmp_path, seed=1, count=300)
    for tally in tallies.values():
        assert tally.total("refused") > 100 and tally.total("loaded") > 5


def test_fuzz_few_dozen_checkpoints(tmp_path, base_checkpoints):
    tally = run_checkpoint_fuzz(tmp_path, base_checkpoints, seed=1, count=60)
    assert tally.total("refused") > 40 and tally.total() == 60


@pytest.mark.slow
def test_fuzz_thousands_of_configs(tmp_path):
    tallies = run_config_fuzz(tmp_path, seed=2, count=4000)
    for tally in tallies.values():
        reasons = {reason for reason, _ in tally.counts}
        assert tally.total("refused") > 1500 and tally.total("loaded") > 100
        assert any(r.endswith("control-char") for r in reasons)
        assert any(r.endswith("too-long") for r in reasons)
        assert any(r.endswith("not-finite") for r in reasons)


@pytest.mark.slow
def test_fuzz_thousand_checkpoints(tmp_path, base_checkpoints):
    tally = run_checkpoint_fuzz(tmp_path, base_checkpoints, seed=2, count=1000)
    reasons = {reason for reason, _ in tally.counts}
    assert CHECKPOINT_REASONS <= reasons
    assert any(r.startswith("model-config-out-of-range") for r in reasons)
    assert tally.total("refused") > 800


# -- properties ------------------------------------------------------------------------------

_json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
_json = st.recursive(
    _json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)
_python_numbers = st.one_of(
    st.floats(),  # NaN and infinities too: parse_record also takes Python objects
    st.integers(min_value=-(10**400), max_value=10**400),
    st.booleans(),
    st.text(max_size=2),
    st.none(),
)


def _expected_validity(drawing) -> bool:
    """An independent statement of the format: a non-empty list of strokes, each two or
    three lists (the same for every stroke) of equally many, at least one, finite numbers."""
    if not isinstance(drawing, list) or not drawing:
        return False
    arities = {len(s) if isinstance(s, list) else -1 for s in drawing}
    if len(arities) != 1 or arities.pop() not in (2, 3):
        return False
    for stroke in drawing:
        if not all(isinstance(c, list) for c in stroke) or len({len(c) for c in stroke}) != 1:
            return False
        for value in (v for c in stroke for v in c):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            try:
                if not math.isfinite(value):  # float(int) raises beyond the float range
                    return False
            except OverflowError:
                return False
        if not stroke[0]:
            return False
    return True


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200) | _json.map(orjson.dumps))
def test_parse_line_yields_a_drawing_or_a_line_error(line):
    try:
        drawing = parse_line(line)
    except LineError as error:
        assert error.kind in ALL_KINDS | {"non-finite"} and error.reason
    else:
        assert drawing.strokes and all(s.ndim == 2 and s.shape[1] == 2 for s in drawing.strokes)
        assert all(np.isfinite(s).all() and len(s) for s in drawing.strokes)


_strokes = st.lists(
    st.lists(st.lists(_python_numbers, min_size=0, max_size=4), min_size=1, max_size=4),
    min_size=0,
    max_size=3,
)


@settings(max_examples=400, deadline=None)
@given(_strokes | _json)
def test_parse_record_accepts_exactly_the_documented_format(drawing):
    valid = _expected_validity(drawing)
    try:
        parsed = parse_record({"drawing": drawing})
    except LineError:
        assert not valid
        return
    assert valid
    for stroke, array in zip(drawing, parsed.strokes, strict=True):
        np.testing.assert_array_equal(
            array, np.column_stack([np.asarray(c, float) for c in stroke[:2]])
        )
    assert (parsed.times is None) == (len(drawing[0]) == 2)
    for stroke, times in zip(drawing, parsed.times or (), strict=False):
        np.testing.assert_array_equal(times, np.asarray(stroke[2], float))


_coordinate = st.floats(min_value=-1e300, max_value=1e300, allow_nan=False, allow_subnormal=True)
_drawings = st.lists(
    st.lists(st.tuples(_coordinate, _coordinate), min_size=1, max_size=6).map(np.array),
    min_size=1,
    max_size=4,
).map(lambda strokes: Drawing(tuple(strokes), word="fuzz"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(drawings=st.lists(_drawings, min_size=1, max_size=4))
def test_any_finite_drawing_round_trips_and_renders_with_ink(tmp_path, drawings):
    """Huge, tiny, negative and single-point input is written, read back exactly, and
    normalised into a visible render."""
    path = tmp_path / "d.ndjson"
    write_ndjson(drawings, path)
    back = list(read_ndjson(path))
    assert len(back) == len(drawings)
    for a, b in zip(drawings, back, strict=True):
        assert all(np.array_equal(p, q) for p, q in zip(a.strokes, b.strokes, strict=True))
    images = render(back)
    assert (images.reshape(len(back), -1).max(axis=1) > 0).all()


def test_the_validity_oracle_rejects_each_bad_kind():
    """The parse_record oracle is not vacuous: each kind of bad record is rejected."""
    bad = {
        "empty-drawing": [],
        "bad-stroke": [[[1]]],
        "ragged": [[[1, 2], [3]]],
        "non-numeric": [[[1, "2"], [3, 4]]],
        "non-finite": [[[1, float("nan")], [3, 4]]],
        "empty-stroke": [[[], []]],
    }
    for kind, drawing in bad.items():
        assert not _expected_validity(drawing)
        with pytest.raises(LineError) as caught:
            parse_record({"drawing": drawing})
        assert caught.value.kind == kind
