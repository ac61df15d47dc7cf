"""How generated bitmaps are scored, whoever made them.

Owns: the evaluator (the width-k classifier whose features define the feature space: its
config and network in ``classifier``; its training, checkpoints and identity in
``evaluator``; the suite's default one, trained once and cached, in ``feature_space``), the
metrics (``metrics``: features -> statistics -> distance, one registry of named metrics),
scoring samples against real drawings (``scoring``) and the calibration of a feature space by
degraded real drawings (``calibration``).
May import: ``rasterize``, the base modules and ``sketchgen.data``; not models or training.
"""
