"""rasterize: read Quick, Draw! strokes and render them to bitmaps (numpy + cairocffi only).

The names below are importable from here and loaded on first use (PEP 562), so importing a
light module such as ``rasterize.geometry`` loads neither numpy nor cairo. This package never
imports torch at module level; ``rasterize.torch_render`` is the one module that needs it and
is imported explicitly.
"""

import importlib

_HOMES = {  # public name -> the module that defines it
    "Drawing": "drawings",
    "drawing_from_arrays": "drawings",
    "write_ndjson": "drawings",
    "NdjsonError": "ndjson_reader",
    "SkipLog": "ndjson_reader",
    "read_ndjson": "ndjson_reader",
    "RasterizeOptions": "parallel",
    "RasterizeResult": "parallel",
    "rasterize_files": "parallel",
    "SimplifyConfig": "simplify",
    "align_and_scale": "simplify",
    "read_sketch_npz": "sketch_npz",
    "write_sketch_npz": "sketch_npz",
    "NormalizedSplits": "strokes",
    "drawing_to_stroke3": "strokes",
    "normalize_splits": "strokes",
    "stroke3_to_canvas": "strokes",
    "stroke3_to_drawing": "strokes",
    "stroke3_to_stroke5": "strokes",
    "stroke5_to_stroke3": "strokes",
}

__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(f"rasterize.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'rasterize' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_HOMES})
