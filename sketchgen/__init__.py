"""sketchgen: train, sample and evaluate generative models of Quick, Draw! drawings.

The notebook API (``sketchgen.api``) is importable from here -- ``sg.load``, ``sg.render``,
``sg.fit``, ``sg.fid`` ... -- and loaded on first use (PEP 562), so ``import sketchgen`` and
``sketchgen --help`` import neither torch nor the data stack.
"""

API = ("load", "render", "fit", "Model", "evaluator", "Evaluator", "EvaluatorConfig",
       "features", "fid", "kid", "scores")  # none may be the name of a submodule: importing
# one (e.g. sketchgen.train) sets the package attribute of that name, shadowing the API's

__all__ = list(API)


def __getattr__(name: str):
    if name in API:
        from sketchgen import api

        return getattr(api, name)
    raise AttributeError(f"module 'sketchgen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *API})
