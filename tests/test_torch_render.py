"""rasterize.torch_render against Google's bitmaps and the cairo renderer, and its inputs.

Guards are the figures measured on this data (README: torch renderer) plus a small margin:
the renderer approximates cairo's antialiasing, so it is held to a measured distance, not
to byte equality.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import head, imported_by

from rasterize.drawings import Drawing
from rasterize.geometry import GOOGLE_SIZE
from rasterize.render import render
from rasterize.strokes import drawing_to_stroke3, stroke3_to_canvas, stroke3_to_stroke5
from rasterize.torch_render import PolylineBatch, TorchRenderConfig, coverage, render_drawings
from rasterize.torch_render import render as torch_render


def differences(images: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """Mean absolute difference in grey levels, overall and for the worst image."""
    per_image = np.abs(images.astype(int) - reference.astype(int)).mean(axis=(1, 2))
    return float(per_image.mean()), float(per_image.max())


def padded_stroke3(drawings: list[Drawing], extra_rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    sketches = [drawing_to_stroke3(d) for d in drawings]
    batch = torch.zeros(len(sketches), max(map(len, sketches)) + extra_rows, 3)
    for row, sketch in enumerate(sketches):
        batch[row, : len(sketch)] = torch.from_numpy(sketch)
    return batch, torch.tensor([len(s) for s in sketches])


# measured: supersample 2 -> 0.513 mean, 1.06 worst image; 3 -> 0.348, 0.741 (450 rows)
@pytest.mark.parametrize("supersample, mean_limit, worst_limit", [(2, 0.56, 1.15), (3, 0.38, 0.8)])
def test_google_bitmaps_within_the_measured_difference(
    google_pairs, supersample, mean_limit, worst_limit
):
    drawings, google = google_pairs
    images = render_drawings(drawings, TorchRenderConfig(supersample=supersample))
    assert images.shape == (450, GOOGLE_SIZE, GOOGLE_SIZE) and images.dtype == np.uint8
    mean, worst = differences(images, google)
    assert mean <= mean_limit and worst <= worst_limit, (mean, worst)
    # the guard is tight: Google's images average 41.7 grey levels, ~75x the distance allowed
    assert google.mean() > 50 * mean_limit


# measured on every 8th of the 450 drawings: 0.926, 0.203, 0.137, 0.270, 0.365
@pytest.mark.parametrize(
    "options, mean_limit",
    [
        (dict(size=16), 1.0),
        (dict(size=64), 0.23),
        (dict(size=100), 0.16),
        (dict(size=64, line_width=6.0, padding=0.0), 0.3),
        (dict(size=28, line_width=30.0, padding=40.0), 0.4),
    ],
)
def test_any_size_and_geometry_match_cairo(google_pairs, options, mean_limit):
    drawings = google_pairs[0][::8]
    images = render_drawings(drawings, TorchRenderConfig(**options))
    size = options["size"]
    assert images.shape == (len(drawings), size, size) and images.dtype == np.uint8
    assert images.max() == 255 and images.min() == 0
    mean, _ = differences(images, render(drawings, **options))
    assert mean <= mean_limit, mean


def test_invert_swaps_ink_and_paper(google_pairs):
    batch = PolylineBatch.from_drawings(google_pairs[0][:30])
    inverted = torch_render(batch, TorchRenderConfig(invert=True))
    assert torch.equal(inverted, 255 - torch_render(batch))


def test_raw_drawings_are_normalised_like_cairo(mirror):
    raw = head(mirror / "full" / "raw" / "cat.ndjson", 12)
    assert np.abs(raw[0].points()).max() > 255  # really raw coordinates
    mean, worst = differences(render_drawings(raw), render(raw))
    assert mean <= 0.85 and worst <= 1.1, (mean, worst)  # measured 0.771, 1.010


def test_small_chunks_give_the_same_pixels(google_pairs):
    """A tiny budget splits strokes into many parts and groups; pixels must not change."""
    batch = PolylineBatch.from_drawings(google_pairs[0][:40])
    tiny = TorchRenderConfig(max_chunk_elements=1 << 10)
    assert torch.equal(coverage(batch, tiny), coverage(batch))


def test_stroke3_and_stroke5_render_like_the_drawings(google_pairs):
    drawings = google_pairs[0][::15]
    expected = torch_render(PolylineBatch.from_drawings(drawings))
    stroke3, lengths = padded_stroke3(drawings, extra_rows=3)
    start = torch.tensor(np.stack([d.strokes[0][0] for d in drawings]))  # the first points
    from_stroke3 = PolylineBatch.from_stroke3(stroke3, lengths, False, start)
    assert torch.equal(torch_render(from_stroke3), expected)

    sketches = [drawing_to_stroke3(d) for d in drawings]
    longest = max(map(len, sketches))
    stroke5 = torch.from_numpy(np.stack([stroke3_to_stroke5(s, longest + 2) for s in sketches]))
    assert torch.equal(torch_render(PolylineBatch.from_stroke5(stroke5)),
                       torch_render(PolylineBatch.from_stroke3(stroke3, lengths)))
    with pytest.raises(ValueError, match="start token"):
        PolylineBatch.from_stroke5(stroke5[:, 1:])


def test_normalise_renders_offsets_in_any_units_like_stroke3_to_canvas(google_pairs):
    drawings = google_pairs[0][::15]
    stroke3, lengths = padded_stroke3(drawings, extra_rows=2)
    stroke3[..., :2] /= 37.5  # magenta-style std-normalised offsets
    canvas = [stroke3_to_canvas(drawing_to_stroke3(d)) for d in drawings]
    images = torch_render(PolylineBatch.from_stroke3(stroke3, lengths)).int()
    expected = torch_render(PolylineBatch.from_drawings(canvas)).int()
    assert (images - expected).abs().max() <= 1  # float32 cumsum vs float64: rounding only


def test_pen_up_separates_strokes_and_a_repeated_stroke_darkens_like_cairo():
    line = np.array([[40.0, 128.0], [100.0, 128.0]])
    apart = Drawing((line, line + [120.0, 0.0]))
    joined = Drawing((np.concatenate([line, line + [120.0, 0.0]]),))
    images = render_drawings([apart, joined], TorchRenderConfig(size=32))
    inked_columns = [np.flatnonzero(image.max(axis=0)) for image in images]
    assert np.diff(inked_columns[0]).max() > 3  # a gap between the two strokes
    assert np.diff(inked_columns[1]).max() == 1  # the pen never lifted: one line

    dot = np.array([[128.5, 128.5]])
    once, thrice = Drawing((dot,)), Drawing((dot, dot, dot))
    ours = render_drawings([once, thrice], TorchRenderConfig(size=GOOGLE_SIZE)).astype(int)
    cairo = render([once, thrice], size=GOOGLE_SIZE).astype(int)
    assert ours[1].sum() > ours[0].sum() * 1.3  # composited three times, like cairo's OVER
    assert np.abs(ours - cairo).max() <= 12, np.abs(ours - cairo).max()  # measured 10


def test_padding_empty_rows_and_bad_masks():
    points = torch.tensor([[[10.0, 10.0], [200.0, 90.0], [0.0, 0.0]], [[0.0, 0.0]] * 3])
    pen_up = torch.tensor([[False, True, False], [False, False, False]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    images = torch_render(PolylineBatch(points, pen_up, mask))
    unpadded = PolylineBatch(points[:1, :2], pen_up[:1, :2], mask[:1, :2])
    assert torch.equal(images[:1], torch_render(unpadded))
    assert images[0].max() == 255 and images[1].max() == 0
    assert torch_render(PolylineBatch.from_drawings([])).shape == (0, GOOGLE_SIZE, GOOGLE_SIZE)
    with pytest.raises(ValueError, match="prefix"):
        torch_render(PolylineBatch(points, pen_up, torch.tensor([[True, False, True]] * 2)))
    with pytest.raises(ValueError, match="finite"):
        torch_render(PolylineBatch(points.clone().fill_(torch.nan), pen_up, mask))
    with pytest.raises(ValueError, match=r"\(B, P, 2\)"):
        PolylineBatch(points[:, :2], pen_up, mask)


def test_coverage_is_differentiable_in_the_points():
    """Gradient descent on an image loss moves a free point onto its target position."""
    anchor = [255.0, 255.0]  # a fixed dot holding the drawing's max, hence its centring
    target_batch = PolylineBatch(
        torch.tensor([[anchor, [100.0, 120.0], [140.0, 120.0]]]),
        torch.tensor([[True, False, True]]),
        torch.ones(1, 3, dtype=torch.bool),
    )
    config = TorchRenderConfig(size=48)
    target = coverage(target_batch, config)
    free = torch.tensor([[anchor, [100.0, 126.0], [140.0, 120.0]]], requires_grad=True)
    losses = []
    for _ in range(30):  # plain gradient descent (torch.optim's first step imports a lot)
        batch = PolylineBatch(free, target_batch.pen_up, target_batch.mask)
        loss = ((coverage(batch, config) - target) ** 2).sum()
        loss.backward()
        assert torch.isfinite(free.grad).all()
        with torch.no_grad():
            free -= 2.0 * free.grad
        free.grad = None
        losses.append(loss.item())
    assert losses[-1] < 0.01 * losses[0]  # measured 4.25 -> 0.0043
    assert abs(free[0, 1, 1].item() - 120.0) < 0.5  # measured 120.25


def test_importing_rasterize_does_not_import_torch():
    assert imported_by("import rasterize, rasterize.render", ("torch",)) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(google_pairs):
    drawings = google_pairs[0][:60]
    on_cpu = torch_render(PolylineBatch.from_drawings(drawings))
    on_gpu = torch_render(PolylineBatch.from_drawings(drawings, device="cuda"))
    assert on_gpu.device.type == "cuda"
    assert (on_gpu.cpu().int() - on_cpu.int()).abs().max() <= 1  # float order on the GPU
