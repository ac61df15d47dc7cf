"""The model families and the protocol the harness drives them by.

Owns: each family's networks (pure torch modules: no file I/O, no printing), its config
dataclass, its task (``sketchgen.models.task``: what the harness calls each step), and the
registry of named models that the CLI, the API and comparisons share.
May import: ``rasterize``, the base modules and ``sketchgen.data`` (dataset types, splits).
"""
