"""The one training harness every model goes through.

Owns: ``TrainConfig``, the loop (seeding, devices, progress, JSONL log, checkpoints with exact
resume, the steps and seconds budgets, validation and the best checkpoint, sample grids,
learning GIF, loss curves, divergence guard, torchrun), the run folder's layout, which training
writes and sampling and comparison read, and sampling a trained run.
May import: ``rasterize``, the base modules, ``sketchgen.data`` and ``sketchgen.models``.

Modules, in reading order: ``config`` (TrainConfig), ``harness`` (``train``: the loop, top to
bottom), ``inputs`` (the data and the task built on it), ``checkpoints`` (a run's checkpoint:
layout, resume checks, the task restored from it), ``run_folder`` (the files of a run),
``validation`` (scores during training, the best checkpoint, training seconds), ``sampling`` (a
trained run rebuilt and sampled).
"""
