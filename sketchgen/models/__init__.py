"""The model families and the protocol the harness drives them by.

Owns: one package per family (``gan``, ``sketch_rnn``, ``sketch_transformer``: its config
dataclass and presets, its networks as pure torch modules, its task; no file I/O, no
printing), the task protocol (``task``: what a factory gets, what the harness calls each
step), and the registry of named models (``registry``) that the CLI, the API and comparisons
share.
May import: ``rasterize``, the base modules and ``sketchgen.data`` (dataset types, splits);
not ``sketchgen.training``, which drives the models: they know a run's settings only as
``task.RunSettings``.
"""
