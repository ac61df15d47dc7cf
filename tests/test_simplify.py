"""Google's raw -> simplified preprocessing (rasterize.simplify), on hand cases and real pairs."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rasterize.drawings import Drawing, drawing_from_arrays
from rasterize.ndjson_reader import read_ndjson
from rasterize.simplify import (
    SimplifyConfig,
    agreement,
    align_and_scale,
    matched_pairs,
    mirror_pairs,
    rdp_numpy,
    rdp_rust,
    resample,
    simplify,
    symmetric_point_distance,
)

# Measured with the default recipe on the first pair of each of the first 300 categories
# (sorted) of the mirror: exact drawings 92.00%, exact strokes 98.37%, same point count
# 97.33%, mean point distance 0.0229 px. The guards leave a little slack.
GUARD_PAIRS = 300
MIN_EXACT_DRAWINGS = 0.90
MIN_EXACT_STROKES = 0.975
MIN_SAME_POINT_COUNT = 0.96
MAX_MEAN_POINT_DISTANCE = 0.03


def one_stroke(*points) -> Drawing:
    return drawing_from_arrays([np.array(points, dtype=float)])


# -- align_and_scale -------------------------------------------------------------------------


def test_align_and_scale_real_raw_drawings(mirror):
    for raw in itertools.islice(read_ndjson(mirror / "full/raw/cat.ndjson"), 20):
        aligned = align_and_scale(raw)
        points, original = aligned.points(), raw.points()
        np.testing.assert_array_equal(points.min(axis=0), [0, 0])
        assert points.max() == 255
        # uniform: the aspect ratio is kept
        extent, original_extent = np.ptp(points, axis=0), np.ptp(original, axis=0)
        np.testing.assert_allclose(extent * original_extent.max(), original_extent * 255)
        assert aligned.times is raw.times and aligned.metadata() == raw.metadata()
        assert [len(s) for s in aligned.strokes] == [len(s) for s in raw.strokes]


@pytest.mark.parametrize(
    "points, expected",
    [
        ([[1e308, -1e308], [-1e308, 1e308]], [[255, 0], [0, 255]]),  # max - min overflows
        ([[5e-324, 0], [0, 0]], [[255, 0], [0, 0]]),  # a subnormal extent
        ([[-1e9, 5], [1e9, 7]], [[0, 0], [255, 255e-9]]),
        ([[-3, -3], [-1, -2]], [[0, 0], [255, 127.5]]),
        ([[3, 4], [3, 4]], [[0, 0], [0, 0]]),  # no extent: only shifted
    ],
)
def test_align_and_scale_any_finite_coordinates(points, expected):
    aligned = align_and_scale(one_stroke(*points))
    np.testing.assert_allclose(aligned.strokes[0], expected, rtol=1e-12)


# -- resample and RDP ------------------------------------------------------------------------


def test_resample_walks_the_arc_length_and_keeps_the_end():
    corner = np.array([[0, 0], [3, 0], [3, 2.5]], dtype=float)
    expected = [[0, 0], [1, 0], [2, 0], [3, 0], [3, 1], [3, 2], [3, 2.5]]
    np.testing.assert_allclose(resample(corner), expected)
    np.testing.assert_array_equal(resample(np.array([[2.0, 2.0], [2.0, 2.0]])), [[2, 2]])
    np.testing.assert_array_equal(resample(np.array([[2.0, 3.0]])), [[2, 3]])


def test_rdp_measures_the_distance_to_the_line_not_the_segment():
    """Back-tracking past the chord's end: on the infinite line (numpy, like Google), six
    pixels beyond the segment (the Rust package keeps it)."""
    stroke = np.array([[0, 0], [10, 0], [4, 0]], dtype=float)
    np.testing.assert_array_equal(rdp_numpy(stroke, 2.0), [[0, 0], [4, 0]])
    np.testing.assert_array_equal(rdp_rust(stroke, 2.0), stroke)


def test_rdp_keeps_points_farther_than_epsilon_only():
    at_epsilon = np.array([[0, 0], [5, 2.0], [10, 0]])
    np.testing.assert_array_equal(rdp_numpy(at_epsilon, 2.0), [[0, 0], [10, 0]])  # strict >
    beyond = np.array([[0, 0], [5, 2.001], [10, 0]])
    np.testing.assert_array_equal(rdp_numpy(beyond, 2.0), beyond)
    closed = np.array([[0, 0], [10, 0], [10, 10], [0, 10], [0, 0]], dtype=float)
    np.testing.assert_array_equal(rdp_numpy(closed, 2.0), closed)  # chord of length 0


_strokes = st.lists(  # distinct points, so each kept point has one place in the stroke
    st.tuples(st.integers(0, 255), st.integers(0, 255)), min_size=1, max_size=40, unique=True
).map(lambda points: np.array(points, dtype=float))


@settings(max_examples=200, deadline=None)
@given(_strokes, st.floats(0.5, 20))
def test_rdp_drops_only_points_within_epsilon_of_their_kept_chord(stroke, epsilon):
    kept = rdp_numpy(stroke, epsilon)
    positions = [int(np.flatnonzero((stroke == point).all(axis=1))[0]) for point in kept]
    assert positions == sorted(positions) and positions[0] == 0
    assert positions[-1] == len(stroke) - 1
    for first, last in itertools.pairwise(positions):
        start, (dx, dy) = stroke[first], stroke[last] - stroke[first]
        inner = stroke[first + 1 : last] - start
        distance = np.abs(dx * inner[:, 1] - dy * inner[:, 0]) / np.hypot(dx, dy)
        assert (distance <= epsilon).all()


# -- simplify --------------------------------------------------------------------------------


def test_simplify_gives_googles_format(mirror):
    for raw in itertools.islice(read_ndjson(mirror / "full/raw/zigzag.ndjson"), 20):
        simplified = simplify(raw)
        points = simplified.points()
        assert points.min() == 0 and points.max() <= 255
        np.testing.assert_array_equal(points, np.round(points))
        assert simplified.times is None and simplified.metadata() == raw.metadata()
        assert len(simplified.strokes) == len(raw.strokes)
        assert all(len(s) >= 2 for s in simplified.strokes)


def test_simplify_straight_line_and_dot():
    line = simplify(one_stroke([0, 0], [50, 50], [100, 100]))
    np.testing.assert_array_equal(line.strokes[0], [[0, 0], [255, 255]])
    dot = simplify(drawing_from_arrays([[[0.0, 0.0], [10.0, 4.0]], [[3.3, 1.6]]]))
    np.testing.assert_array_equal(dot.strokes[1], [[84, 41], [84, 41]])  # Google writes it twice


def test_simplify_rejects_an_unknown_backend():
    with pytest.raises(ValueError, match="rdp must be one of"):
        simplify(one_stroke([0, 0], [1, 1]), SimplifyConfig(rdp="c"))


def test_symmetric_point_distance_by_hand():
    ours = one_stroke([0, 0], [2, 0])
    theirs = one_stroke([0, 0], [0, 0])
    assert symmetric_point_distance(ours, theirs) == pytest.approx((1.0 + 0.0) / 2)
    assert symmetric_point_distance(ours, ours) == 0


def test_agreement_with_itself_is_exact(mirror):
    raws = list(itertools.islice(read_ndjson(mirror / "full/raw/cat.ndjson"), 10))
    figures = agreement((raw, simplify(raw)) for raw in raws)
    assert (figures.pairs, figures.exact_drawings, figures.mean_point_distance) == (10, 1.0, 0.0)


def test_matched_pairs_share_key_ids(mirror):
    pairs = list(
        matched_pairs(mirror / "full/raw/cat.ndjson", mirror / "full/simplified/cat.ndjson")
    )
    assert pairs and all(r.key_id == s.key_id and r.word == "cat" for r, s in pairs)
    assert all(len(r.strokes) == len(s.strokes) for r, s in pairs)


def test_agreement_with_googles_simplified_drawings(mirror):
    """The recipe reproduces Google's own simplified files (guarded at the measured level)."""
    pairs = itertools.islice(mirror_pairs(mirror / "full", per_category=1), GUARD_PAIRS)
    figures = agreement(pairs)
    print(figures.summary())
    assert figures.pairs == GUARD_PAIRS
    assert figures.exact_drawings >= MIN_EXACT_DRAWINGS
    assert figures.exact_strokes >= MIN_EXACT_STROKES
    assert figures.same_point_count >= MIN_SAME_POINT_COUNT
    assert figures.mean_point_distance <= MAX_MEAN_POINT_DISTANCE
