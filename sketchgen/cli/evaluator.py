"""``sketchgen evaluator CATEGORIES... --out FILE [--per-class N --width K --seed S
--max-epochs E] [--overwrite]``: train and save an evaluator on categories of its own.

Its features serve any category, so one saved evaluator can judge every comparison; reports
whose evaluator sha256 matches are comparable. The file holds the training manifest
(sources, rows per class, seed, accuracies, class names).
"""

from __future__ import annotations

import argparse
import sys

from sketchgen.errors import UsageError
from sketchgen.evaluation.feature_space import EvaluatorConfig
from sketchgen.runtime import DEVICE

HELP = "train a Quick, Draw! classifier whose features are a feature space, and save it"
_RECIPE = EvaluatorConfig()  # the suite's default evaluator: its drawings per class and seed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("categories", nargs="+", metavar="CATEGORY",
                        help="Google category names or data files, one class each (>= 2)")
    parser.add_argument("--out", required=True, metavar="FILE", help="the classifier's .pt")
    parser.add_argument("--per-class", type=int, default=_RECIPE.per_class, metavar="N",
                        help="the first N drawings of each category, split 80/10/10 into "
                             f"train, valid and test (default: {_RECIPE.per_class})")
    parser.add_argument("--width", type=int, default=None, metavar="K",
                        help="k: 8k dense features (default: the suite's evaluator's)")
    parser.add_argument("--seed", type=int, default=_RECIPE.seed, metavar="S",
                        help=f"weights, batch order and split (default: {_RECIPE.seed})")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="E",
                        help="at most E epochs; early stopping usually ends sooner "
                             "(default: the suite's evaluator's)")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--device", default=DEVICE,
                        help=f"torch device, or auto (default: {DEVICE}; cpu gives the same "
                             "weights for the same seed on the same machine)")


def run(args: argparse.Namespace) -> int:
    from sketchgen.data.sources import class_names
    from sketchgen.evaluation.classifier import ClassifierConfig
    from sketchgen.evaluation.evaluator import (
        fit_and_evaluate,
        save_classifier,
        source_locations,
        training_images,
    )
    from sketchgen.outputs import check_free

    chosen = {"width": args.width, "seed": args.seed, "max_epochs": args.max_epochs}
    config = ClassifierConfig(**{key: value for key, value in chosen.items() if value is not None})
    check_free([args.out], args.overwrite)
    try:  # a category or file that is not there, a bad line, too few drawings
        if len(class_names(args.categories)) < 2:
            raise UsageError("CATEGORIES: a classifier needs at least two classes")
        sources = source_locations(args.categories, config)
        data = training_images(args.categories, config, args.per_class)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    classifier, tested = fit_and_evaluate(*data, config, args.device, sources=sources)
    path = save_classifier(classifier, args.out)
    print(f"{path}: {classifier.feature_name}, sha256 {classifier.sha256}, test accuracy "
          f"{tested.accuracy:.3f} on {tested.n} drawings", file=sys.stderr)
    print(path)
    return 0
