"""A comparison: many runs planned from one TOML file, scored alike, reported once.

Owns: the comparison config, the plan (models x categories as resumable run folders), the real
drawings held out for scoring, and running the plan through training, evaluation and report:

- ``config``: the TOML file as dataclasses (``CompareConfig``, ``ModelSpec``, the evaluator's
  ``ClassifierSettings``) and ``load_config``;
- ``plan``: ``plan_runs``, every run checked before any work, and the report's file names;
- ``real``: the real drawings' split and the evaluator's life cycle (train or load, test);
- ``run``: ``run_comparison``, from the plan to the report folder.

May import: everything in ``sketchgen`` below the applications (not ``cli``, ``api``,
``gpu_check``).
"""
