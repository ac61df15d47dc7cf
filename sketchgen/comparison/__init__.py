"""A comparison: many runs planned from one TOML file, scored alike, reported once.

Owns: the comparison config, the plan (models x categories as resumable run folders), the real
drawings held out for scoring, and running the plan through training, evaluation and report.
May import: everything in ``sketchgen`` below the applications (not ``cli``, ``api``,
``gpu_check``).
"""
