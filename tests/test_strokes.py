"""rasterize.strokes: stroke-3/stroke-5 conventions, Sketch-RNN .npz files, normalisation."""

from __future__ import annotations

from itertools import islice

import numpy as np
import pytest

from rasterize.drawings import Drawing
from rasterize.ndjson_reader import read_ndjson
from rasterize.sketch_npz import read_sketch_npz, write_sketch_npz
from rasterize.strokes import (
    END_ROW,
    START_TOKEN,
    drawing_to_stroke3,
    normalize_splits,
    stroke3_to_canvas,
    stroke3_to_drawing,
    stroke3_to_stroke5,
    stroke5_to_stroke3,
)


@pytest.fixture(scope="module")
def drawings(mirror):
    folder = mirror / "full" / "simplified"
    return [d for name in ("cat", "face", "zigzag") for d in
            islice(read_ndjson(folder / f"{name}.ndjson"), 40)]


@pytest.fixture(scope="module")
def face_npz(mirror):
    return read_sketch_npz(mirror / "sketchrnn" / "face.npz")


def test_stroke3_starts_at_the_first_point_and_restores_positions(drawings):
    """magenta's data: the first point is the origin, so no sketch starts with a jump from
    (0, 0) to where it was drawn; given that point back, the drawing comes back exactly."""
    for drawing in drawings:
        stroke3 = drawing_to_stroke3(drawing)
        points = drawing.points()
        lone_first_point = len(drawing.strokes[0]) == 1
        assert stroke3.shape == (drawing.num_points - 1 + lone_first_point, 3)
        np.testing.assert_array_equal(stroke3[lone_first_point:, :2], np.diff(points, axis=0))
        assert stroke3[:, 2].sum() == len(drawing.strokes) and stroke3[-1, 2] == 1
        back = stroke3_to_drawing(stroke3, start=drawing.strokes[0][0])
        assert len(back.strokes) == len(drawing.strokes)
        for a, b in zip(back.strokes[lone_first_point:], drawing.strokes[lone_first_point:],
                        strict=True):
            np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(stroke3_to_drawing(stroke3).strokes[0][0], [0, 0])


def test_a_lone_first_point_is_kept_as_a_lifted_zero_row():
    drawing = Drawing((np.array([[7.0, 9.0]]), np.array([[10.0, 9.0], [12.0, 5.0]])))
    np.testing.assert_array_equal(drawing_to_stroke3(drawing), [[0, 0, 1], [3, 0, 0], [2, -4, 1]])
    back = stroke3_to_drawing(drawing_to_stroke3(drawing), start=(7, 9))
    np.testing.assert_array_equal(back.strokes[0], [[7, 9], [7, 9]])  # the same dot
    np.testing.assert_array_equal(back.strokes[1], drawing.strokes[1])
    dot = drawing_to_stroke3(Drawing((np.array([[4.0, 4.0]]),)))
    np.testing.assert_array_equal(dot, [[0, 0, 1]])  # a one-point drawing is still a sketch


def test_npz_sketches_round_trip_through_drawings(face_npz):
    """Google's sketches start at their first point: as drawings and back, unchanged."""
    for sketch in face_npz["sketches"][:200]:
        drawing = stroke3_to_drawing(sketch)
        assert drawing.num_points == len(sketch) + 1
        np.testing.assert_array_equal(drawing_to_stroke3(drawing), sketch)


def test_stroke5_layout_and_round_trip(drawings):
    for drawing in drawings:
        stroke3 = drawing_to_stroke3(drawing)
        n = len(stroke3)
        stroke5 = stroke3_to_stroke5(stroke3, length=n + 7)
        assert stroke5.shape == (n + 8, 5)
        np.testing.assert_array_equal(stroke5[0], START_TOKEN)
        np.testing.assert_array_equal(stroke5[n + 1 :], np.tile(END_ROW, (7, 1)))
        # the end is marked after the last point; the last point is a plain pen lift
        np.testing.assert_array_equal(stroke5[n, 2:], [0, 1, 0])
        np.testing.assert_array_equal(stroke5[1 : n + 1, 2:].sum(axis=1), np.ones(n))
        np.testing.assert_array_equal(stroke5_to_stroke3(stroke5), stroke3)
    assert len(stroke3_to_stroke5(stroke3)) == len(stroke3) + 2  # default: one end row


def test_stroke5_needs_room_for_an_end_row_and_a_start_token():
    stroke3 = np.array([[1.0, 2.0, 0.0], [3.0, 4.0, 1.0]])
    with pytest.raises(ValueError, match="no end row"):
        stroke3_to_stroke5(stroke3, length=2)
    with pytest.raises(ValueError, match="start token"):
        stroke5_to_stroke3(stroke3_to_stroke5(stroke3)[1:])


def test_stroke5_without_end_row_keeps_every_point():
    """A sequence cut at its cap (no end row) decodes to all its points."""
    stroke3 = np.array([[5.0, 5.0, 0.0], [1.0, 0.0, 1.0], [2.0, 2.0, 0.0]])
    capped = stroke3_to_stroke5(stroke3)[:-1]
    np.testing.assert_array_equal(stroke5_to_stroke3(capped), stroke3)
    drawing = stroke3_to_drawing(stroke3)
    assert [len(s) for s in drawing.strokes] == [3, 1]  # the origin, then one point per row


def test_canvas_drawing_fits_google_box():
    stroke3 = np.array([[-3.0, 0.5, 0.0], [2.0, -1.5, 1.0], [0.25, 4.0, 1.0]])
    drawing = stroke3_to_canvas(stroke3, word="x")
    points = drawing.points()
    assert points.min() == 0 and points.max() == pytest.approx(255)
    assert drawing.word == "x"


def test_reads_the_mirror_npz_layout(face_npz):
    assert list(face_npz) == ["sketches"]
    sketches = face_npz["sketches"]
    assert len(sketches) == 2500
    assert all(s.dtype == np.int16 and s.shape[1] == 3 and s[-1, 2] == 1 for s in sketches[:100])


def test_google_npz_layout_round_trip(tmp_path, face_npz, drawings):
    sketches = face_npz["sketches"]
    splits = {"train": sketches[:30], "valid": sketches[30:35],
              "test": [drawing_to_stroke3(d) for d in drawings[:3]]}
    path = tmp_path / "mine.npz"
    write_sketch_npz(path, splits)
    back = read_sketch_npz(path)
    assert list(back) == ["train", "valid", "test"]
    for key, original in splits.items():
        assert len(back[key]) == len(original)
        for a, b in zip(back[key], original, strict=True):
            assert a.dtype == np.int16
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="non-integer"):
        write_sketch_npz(path, {"train": [np.array([[0.5, 1.0, 1.0]])]})
    assert read_sketch_npz(path)["train"][0].shape == sketches[0].shape  # untouched on failure


def test_normalisation_uses_train_std_for_every_split(face_npz):
    sketches = face_npz["sketches"]
    lengths = np.array([len(s) for s in sketches])
    cap = int(np.percentile(lengths, 90))
    splits = {"train": sketches[:2000], "valid": sketches[2000:2250], "test": sketches[2250:]}
    result = normalize_splits(splits, max_seq_len=cap)
    assert result.dropped == {k: int((lengths[i] > cap).sum()) for k, i in
                              [("train", slice(0, 2000)), ("valid", slice(2000, 2250)),
                               ("test", slice(2250, None))]}
    assert result.dropped["train"] > 0
    np.testing.assert_array_equal(result.kept["train"], np.flatnonzero(lengths[:2000] <= cap))
    kept_train = [s for s in splits["train"] if len(s) <= cap]
    expected = np.std(np.concatenate([s[:, :2].ravel() for s in kept_train]).astype(np.float64))
    assert result.scale_factor == pytest.approx(expected, rel=1e-12)
    # normalised training offsets have unit std; valid/test use the same factor, not their own
    train = np.concatenate([s[:, :2].ravel() for s in result.splits["train"]])
    assert np.std(train) == pytest.approx(1.0, rel=1e-5)
    kept_valid = [s for s in splits["valid"] if len(s) <= cap]
    for normalised, original in zip(result.splits["valid"], kept_valid, strict=True):
        np.testing.assert_allclose(normalised[:, :2], original[:, :2] / expected, rtol=1e-6)
        np.testing.assert_array_equal(normalised[:, 2], original[:, 2])
