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

__all__ = [
    "Drawing",
    "NdjsonError",
    "SkipLog",
    "drawing_from_arrays",
    "read_ndjson",
    "write_ndjson",
]
