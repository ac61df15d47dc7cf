"""rasterize.render against Google's own bitmaps, and its options (sizes, invert, channels)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import head, imported_by

import rasterize.render as render_module
from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_SIZE
from rasterize.render import MAX_PATH_POINTS, is_simplified, render, render_reference


@pytest.fixture(scope="module")
def raw_and_simplified(mirror):
    """Raw cat drawings and their simplified twins (same key_id)."""
    raw = head(mirror / "full" / "raw" / "cat.ndjson", 12)
    simplified = {d.key_id: d for d in head(mirror / "full" / "simplified" / "cat.ndjson", 25)}
    pairs = [(r, simplified[r.key_id]) for r in raw if r.key_id in simplified]
    assert len(pairs) >= 8
    return [r for r, _ in pairs], [s for _, s in pairs]


def test_render_is_byte_identical_to_google_bitmaps(google_pairs):
    drawings, google = google_pairs
    assert len(drawings) == 450
    images = render(drawings)
    assert images.shape == (450, GOOGLE_SIZE, GOOGLE_SIZE) and images.dtype == np.uint8
    mismatched_rows = np.flatnonzero((images != google).any(axis=(1, 2)))
    assert mismatched_rows.tolist() == []


def test_reference_loop_is_byte_identical_to_google_bitmaps(google_pairs):
    drawings, google = google_pairs
    np.testing.assert_array_equal(render_reference(drawings), google)


@pytest.mark.parametrize("size, count", [(64, 60), (256, 12)])
def test_other_sizes_match_the_reference_loop(google_pairs, size, count):
    drawings = google_pairs[0][::37][:count]
    images = render(drawings, size=size)
    assert images.shape == (len(drawings), size, size) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    np.testing.assert_array_equal(images, render_reference(drawings, size=size))


def test_line_width_and_padding_match_the_reference_loop(google_pairs):
    drawings = google_pairs[0][:20]
    options = dict(size=48, line_width=6.0, padding=3.0)
    thin = render(drawings, **options)
    np.testing.assert_array_equal(thin, render_reference(drawings, **options))
    assert thin.astype(int).sum() < render(drawings, size=48).astype(int).sum()


def test_invert_swaps_ink_and_paper(google_pairs):
    drawings = google_pairs[0][:30]
    np.testing.assert_array_equal(render(drawings, invert=True), 255 - render(drawings))


def test_single_point_stroke_is_a_round_dot():
    dot = Drawing((np.array([[128.0, 128.0]]),))
    image = render([dot], size=64)[0]
    np.testing.assert_array_equal(image, render_reference([dot], size=64)[0])
    ink = np.argwhere(image > 128)
    assert len(ink) > 4
    height, width = np.ptp(ink, axis=0) + 1
    assert height == width  # a disc, not a line


def test_raw_input_is_aligned_and_scaled_first(google_pairs):
    # Simplified drawings touching both axes and reaching 255: an affine copy must render
    # the same once normalised (up to 1 grey level from float round-off).
    drawings = [
        d
        for d in google_pairs[0][:100]
        if (d.points().min(axis=0) == 0).all() and d.points().max() == 255
    ][:20]
    assert len(drawings) >= 10
    moved = [Drawing(tuple(s * 3.7 - 412.5 for s in d.strokes)) for d in drawings]
    assert not any(is_simplified(d) for d in moved)
    difference = np.abs(render(moved).astype(int) - render(drawings))
    assert difference.max() <= 1


def test_raw_drawings_render_close_to_their_simplified_twins(raw_and_simplified):
    raw, simplified = raw_and_simplified
    assert not any(is_simplified(d) for d in raw)
    difference = np.abs(render(raw).astype(int) - render(simplified)).mean(axis=(1, 2))
    # Simplification moves points by about a pixel of 256: a few grey levels at 28 px,
    # against tens of levels between different drawings.
    unrelated = np.abs(render(raw).astype(int) - render(simplified[1:] + simplified[:1]))
    assert difference.max() < 6.0
    assert unrelated.mean() > 3 * difference.mean()


def test_channels_shape_and_ink_channel(raw_and_simplified):
    raw, _ = raw_and_simplified
    stacked = render(raw, size=32, channels=("ink", "order", "time"))
    assert stacked.shape == (len(raw), 3, 32, 32) and stacked.dtype == np.uint8
    np.testing.assert_array_equal(stacked[:, 0], render(raw, size=32))
    ink = stacked[:, 0] > 0
    for channel in (1, 2):  # order and time only ever draw where there is ink
        assert not stacked[:, channel][~ink].any()
        assert stacked[:, channel][ink].any()
    inverted = render(raw, size=32, channels=("time",), invert=True)
    np.testing.assert_array_equal(inverted[:, 0], 255 - stacked[:, 2])


def test_order_channel_dims_later_strokes():
    top = np.array([[0.0, 0.0], [255.0, 0.0]])
    middle = np.array([[0.0, 128.0], [255.0, 128.0]])
    bottom = np.array([[0.0, 255.0], [255.0, 255.0]])
    image = render([Drawing((top, middle, bottom))], size=64, channels=["order"])[0, 0]
    rows = image.max(axis=1)
    bright = [rows[:20].max(), rows[22:42].max(), rows[44:].max()]
    # stroke k of 3 at 255 (3 - k) / 3, up to rounding of premultiplied colour
    np.testing.assert_allclose(bright, [255, 170, 85], atol=1)


def test_time_channel_brightens_along_the_stroke():
    x = np.linspace(0.0, 255.0, 6)
    stroke = np.column_stack([x, np.full(6, 128.0)])
    drawing = Drawing((stroke,), times=(np.linspace(0.0, 1000.0, 6),))
    ink, time = render([drawing], size=64, channels=("ink", "time"))[0]
    centre_row = int(np.argmax(ink.sum(axis=1)))
    solid = time[centre_row][ink[centre_row] == 255].astype(int)
    assert np.all(np.diff(solid) >= 0) and solid[0] < solid[-1]
    # first segment ends at t = 200 of 1000: 0.25 + 0.75 * 0.2 = 0.4 -> 102; last one: 255
    assert solid[0] == pytest.approx(102, abs=1) and solid[-1] == 255


def test_time_channel_needs_timestamps(google_pairs):
    with pytest.raises(ValueError, match="no timestamps"):
        render(google_pairs[0][:2], channels=("ink", "time"))


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(size=0), "size"),
        (dict(size=28.0), "size"),
        (dict(line_width=-1.0), "line_width"),
        (dict(padding=float("nan")), "padding"),
        (dict(channels=("ink", "colour")), "channels"),
        (dict(channels=()), "channels"),
    ],
)
def test_bad_options_are_rejected(google_pairs, options, message):
    with pytest.raises(ValueError, match=message):
        render(google_pairs[0][:1], **options)


def test_no_drawings_give_an_empty_batch():
    assert render([], size=16).shape == (0, 16, 16)
    assert render([], channels=("ink", "order")).shape == (0, 2, GOOGLE_SIZE, GOOGLE_SIZE)


# -- long strokes: linear by construction (issue 10, item 7) ---------------------------------


def sweep(points: int) -> Drawing:
    """One stroke of ``points`` integer points sweeping the box row by row."""
    k = np.arange(points)
    x = np.where(k // 256 % 2, 255 - k % 256, k % 256)
    return Drawing((np.column_stack([x, k // 256 % 256]).astype(np.float64),))


def test_cairo_is_never_given_more_than_max_path_points_at_once(monkeypatch):
    """cairo's time for one stroke grows faster than its points (80k points 0.7 s, 320k 9.8 s;
    a 1.4M-point line never finished): longer strokes go to it in pieces of at most
    MAX_PATH_POINTS, so the work is a sum of bounded steps, linear in the points."""
    seen = []

    def spy(points, lengths):
        seen.append(lengths.copy())
        return path_records(points, lengths)

    path_records = render_module._path_records
    monkeypatch.setattr(render_module, "_path_records", spy)
    n = 3 * MAX_PATH_POINTS + 5
    render([sweep(n), sweep(MAX_PATH_POINTS)], channels=("ink", "order"))
    for lengths in seen:
        assert lengths.max() <= MAX_PATH_POINTS
        assert MAX_PATH_POINTS in lengths[4:]  # a stroke at the bound is stroked whole
        assert lengths.sum() == n + 3 + MAX_PATH_POINTS  # pieces share only their end points


def test_a_stroke_in_pieces_differs_from_it_whole_only_at_a_few_edge_pixels(monkeypatch):
    long = [sweep(3 * MAX_PATH_POINTS + 5)]  # it overlaps itself row after row
    pieces = render(long)
    monkeypatch.setattr(render_module, "_in_pieces", lambda polylines: polylines)
    whole = render(long)
    differ = pieces != whole
    assert differ.sum() <= 0.03 * differ.size  # 11 of 784 pixels, measured


def test_pieces_share_their_end_points_and_keep_every_segment():
    points = np.arange(30.0).reshape(15, 2)
    whole = render_module._Polylines(points, np.array([1, 10, 4]), np.array([0.2, 0.5, 0.9]),
                                     np.array([2, 1]))
    pieces = render_module._in_pieces(whole, most=4)
    assert pieces.lengths.tolist() == [1, 4, 4, 4, 4]
    assert pieces.levels.tolist() == [0.2, 0.5, 0.5, 0.5, 0.9]
    assert pieces.per_image.tolist() == [4, 1]
    taken = (pieces.points[:, 0] // 2).astype(int)  # which point of the input each one is
    assert taken.tolist() == [0, 1, 2, 3, 4, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12, 13, 14]
    assert render_module._in_pieces(whole, most=10) is whole  # nothing to cut


# -- the package: its names load on first use ------------------------------------------------


def test_the_geometry_loads_no_renderer():
    """Configs and the command line name Google's geometry without loading numpy or cairo."""
    assert imported_by("import rasterize.geometry", ("numpy", "cairocffi", "orjson")) == []


def test_every_public_name_is_importable_from_the_package():
    import rasterize

    for name in rasterize.__all__:
        value = getattr(rasterize, name)
        assert value.__name__ == name and value.__module__.startswith("rasterize."), name
    assert set(rasterize.__all__) <= set(dir(rasterize))
    assert not hasattr(rasterize, "render_everything")
