"""How generated bitmaps are scored, whoever made them.

Owns: the evaluator (the width-k classifier whose features define the feature space: its
network, training, checkpoints and identity), the metrics (features -> statistics ->
distance, one registry of named metrics) and scoring samples against real drawings.
May import: ``rasterize``, the base modules and ``sketchgen.data``; not models or training.
"""
