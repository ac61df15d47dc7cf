"""sketchgen: train, sample and evaluate generative models of Quick, Draw! drawings.

The notebook API (``sketchgen.api``) is importable from here -- ``sg.load``, ``sg.render``,
``sg.fit``, ``sg.fid`` ... -- and loaded on first use (PEP 562), so ``import sketchgen``
imports neither torch nor the data stack, and ``sketchgen --help`` imports no torch
(``tests/test_layout.py``).
"""

# None may be the name of a sub-package or module: importing one (e.g. sketchgen.data) sets
# the package attribute of that name, which would shadow the API's (hence sg.load, sg.fit).
_API = ("load", "render", "fit", "Model", "evaluator", "Evaluator", "EvaluatorConfig",
        "features", "feature_statistics", "frechet_distance", "fid", "kid", "scores")

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from sketchgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'sketchgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_API})
