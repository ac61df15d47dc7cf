"""The first stroke-3 row against the others, and the normalising std, on the first 2,000 eye
drawings of the mirror (issue 14, item 1): ``python3 reproductions/sketch-rnn/first_rows.py``.

Before the fix (first row = the first point's absolute position): 64.27 / 19.02, std 34.49;
after (the first point is the origin, as in Google's .npz files): 20.42 / 19.00, std 32.34.
"""

import os

import numpy as np

from rasterize.strokes import drawing_to_stroke3, normalizing_scale_factor
from sketchgen.data.datasets import load_drawings

mirror = os.environ.get("QUICKDRAW_MIRROR", "../shared/quickdraw")
drawings = load_drawings(["eye"], per_class=2000, mirror=mirror).drawings
sketches = [drawing_to_stroke3(d) for d in drawings]
first = np.abs(np.stack([s[0, :2] for s in sketches])).mean()
rest = np.abs(np.concatenate([s[1:, :2] for s in sketches])).mean()
print(f"{len(sketches)} eye drawings: mean |dx|, |dy| of the first row {first:.2f}, of the "
      f"other rows {rest:.2f}; normalising std {normalizing_scale_factor(sketches):.2f}")
