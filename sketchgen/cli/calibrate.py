"""``sketchgen calibrate CATEGORY --evaluator FILE [--n N --out DIR --other CATEGORY]
[--overwrite]``: a feature space's FID, KID, precision and recall under standard degradations
of real drawings (``sketchgen.evaluation.calibration``), as ``calibration.csv``,
``calibration.md`` and ``calibration.png`` in DIR.

The drawings are the category's first ones after those the evaluator was trained on (its
manifest's rows): N as the reference, the next N degraded.
"""

from __future__ import annotations

import argparse
import sys

from rasterize.geometry import GOOGLE_LINE_WIDTH, GOOGLE_PADDING
from sketchgen.errors import UsageError

HELP = "score degraded real drawings in a feature space: what its FIDs mean"
KIND = "calibration"  # the output folder's kind (sketchgen.outputs)
DEFAULT_N = 500  # as a comparison's n_samples: calibrate at the N the numbers are read at
FILES = ("calibration.csv", "calibration.md", "calibration.png")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("category", metavar="CATEGORY", help="Google category name")
    parser.add_argument("--evaluator", required=True, metavar="FILE",
                        help="a saved classifier (`sketchgen evaluator`, a comparison's "
                             "classifier.pt)")
    parser.add_argument("--n", type=int, default=DEFAULT_N,
                        help=f"drawings in the reference and in the degraded set "
                             f"(default: {DEFAULT_N})")
    parser.add_argument("--other", default=None, metavar="CATEGORY",
                        help="the category mixed in by `contamination` (default: the "
                             "evaluator's first class other than CATEGORY)")
    parser.add_argument("--out", default=None, metavar="DIR",
                        help="output folder (default: calibration/CATEGORY)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into DIR even if it is neither empty nor a calibration "
                             "folder (files of the names written are replaced; nothing is "
                             "deleted)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sketchgen import outputs
    from sketchgen.evaluation.calibration import calibrate
    from sketchgen.evaluation.evaluator import load_classifier
    from sketchgen.report.calibration import calibration_markdown, plot_calibration
    from sketchgen.runtime import atomic_write

    category = outputs.check_name(args.category, "CATEGORY")
    classifier = load_classifier(args.evaluator, "cpu")
    _check_evaluator(classifier, args.evaluator)
    other = args.other or next(name for name in classifier.class_names if name != category)
    if args.n < 2:
        raise UsageError(f"--n must be at least 2, got {args.n}")
    out = Path(args.out) if args.out is not None else Path("calibration") / category
    with outputs.claim(out, KIND, args.overwrite) as claim:
        reference, drawings, others = _real_sets(category, other, classifier, args.n)
        try:
            frame = calibrate(classifier.features, reference, drawings, others,
                              classifier.config.size)
        except ValueError as error:  # too few drawings for the degradations
            raise UsageError(str(error)) from None
        csv, markdown, figure = written = [out / name for name in FILES]
        new = [path for path in written if not path.exists()]  # recorded once
        atomic_write(csv, lambda tmp: frame.to_csv(tmp, index=False))
        atomic_write(markdown, lambda tmp: tmp.write_text(calibration_markdown(frame) + "\n",
                                                          encoding="utf-8"))
        title = (f"{category}, N = {args.n}, {classifier.feature_name} "
                 f"(sha256 {classifier.sha256[:12]})")
        plot_calibration(frame, figure, title)
        claim.record(new)
    print(markdown.read_text(encoding="utf-8"))
    print(f"calibration: {figure}", file=sys.stderr)
    return 0


def _check_evaluator(classifier, path: str) -> None:
    config = classifier.config
    if config.channels or (config.line_width, config.padding) != (GOOGLE_LINE_WIDTH,
                                                                   GOOGLE_PADDING):
        raise UsageError(f"--evaluator {path}: calibration renders plain bitmaps at Google's "
                         f"settings; this classifier reads others ({config})")


def _real_sets(category: str, other: str, classifier, n: int):
    """(reference bitmaps, drawings to degrade, bitmaps of ``other``), after the drawings
    the evaluator's manifest says it was trained on."""
    from rasterize.render import render
    from sketchgen.data.datasets import load_drawings

    manifest = classifier.manifest  # {} for a classifier saved before manifests: skip none
    used = sum(manifest.get(f"{part}rows_per_class", {}).get(category, 0)
               for part in ("", "valid_", "test_"))
    size = classifier.config.size
    try:
        drawings = load_drawings([category], per_class=used + 2 * n).drawings[used:]
        others = render(load_drawings([other], per_class=n).drawings, size=size)
    except (ValueError, FileNotFoundError) as error:
        raise UsageError(str(error)) from None
    if len(drawings) < 2 * n:
        raise UsageError(f"{category!r} has {len(drawings)} drawings after the evaluator's "
                         f"{used}; --n {n} needs {2 * n}")
    return render(drawings[:n], size=size), drawings[n:], others
