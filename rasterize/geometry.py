"""Google's ``numpy_bitmap`` geometry: the one home of every renderer's defaults.

Google's simplified drawings live in a 256-unit frame; its 28 px bitmaps draw them with a
16-unit line and 16 units of padding on every side (``vector_to_raster``). Imports nothing, so
configs and the command line can name these defaults without loading a renderer.
"""

ORIGINAL_SIDE = 256.0  # Google's simplified drawings live in 0..255
GOOGLE_SIZE = 28  # px, the side of Google's numpy_bitmap files
GOOGLE_LINE_WIDTH = 16.0  # in the 256-unit drawing frame (Google's line_diameter)
GOOGLE_PADDING = 16.0  # in the 256-unit drawing frame, on every side
