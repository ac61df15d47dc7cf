"""rasterize: read Quick, Draw! strokes and render them to bitmaps (numpy + cairocffi only).

This package never imports torch at module level; ``rasterize.torch_render`` is the one
module that needs it and is imported explicitly.
"""

from rasterize.drawings import (
    Drawing,
    NdjsonError,
    SkipLog,
    drawing_from_arrays,
    read_ndjson,
    write_ndjson,
)
from rasterize.parallel import RasterizeOptions, RasterizeResult, rasterize_files
from rasterize.simplify import SimplifyConfig, align_and_scale
from rasterize.strokes import (
    NormalizedSplits,
    drawing_to_stroke3,
    normalize_splits,
    read_sketch_npz,
    stroke3_to_canvas,
    stroke3_to_drawing,
    stroke3_to_stroke5,
    stroke5_to_stroke3,
    write_sketch_npz,
)

__all__ = [
    "Drawing",
    "NdjsonError",
    "SkipLog",
    "drawing_from_arrays",
    "read_ndjson",
    "write_ndjson",
    "RasterizeOptions",
    "RasterizeResult",
    "rasterize_files",
    "SimplifyConfig",
    "align_and_scale",
    "NormalizedSplits",
    "drawing_to_stroke3",
    "normalize_splits",
    "read_sketch_npz",
    "stroke3_to_canvas",
    "stroke3_to_drawing",
    "stroke3_to_stroke5",
    "stroke5_to_stroke3",
    "write_sketch_npz",
]
