"""One GAN per class or one for all (reference 002, the Copenhagen "QuickDraw Data: large
CNNs and GANs" slides): the TF-tutorial DCGAN (``tf-dcgan``) trained on apples, on bananas,
and on apples and bananas together, scored per class in the default evaluator's features.

    python3 reproductions/one-vs-all-gan/run.py               # report/625-steps/
    python3 reproductions/one-vs-all-gan/run.py --steps 250   # report/250-steps/

Data: every simplified apple and banana drawing the shared mirror holds (Google's first 100
lines of each, which Google's bucket holds too), rendered at 28 px as Google's numpy_bitmap
(checked against the mirror's apple bitmaps). The slides ask whether a GAN fits one class
better than two, so each model is scored against the drawings it was trained on; there are
no other bananas, but numpy_bitmap apples after row 100 are apples no model saw: a second,
held-out apple score, and (rows 600-1099) the real-vs-real floor.

Per seed: a model per class (``--steps``, default STEPS, each) and one joint model, scored
after as many steps (equal steps) and after twice as many (equal epochs: as many passes over
its 200 drawings as a class model makes over its 100, and the pair's total compute). The
joint model is unconditional, as in the slides (its D only says real or fake), so its
samples are sorted into apples and bananas by a vote of their NEIGHBOURS nearest training
drawings in the evaluator's features; the share of bananas tests the slides' "bananas made
into apples" (the same vote on each class model's samples shows how far it can be trusted
on generated drawings).

Writes OUT/results.csv (a row per seed, model, class and reference), OUT/results.md (means
over the seeds), OUT/grids/ (samples of each model, first seed). Runs and the joint model's
draws are kept in OUT/_work/runs/; a rerun reuses them.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

import sketchgen as sg
from sketchgen.data.datasets import LabelledBitmaps, load_bitmaps
from sketchgen.evaluation.metrics import FEATURE_METRICS
from sketchgen.figures import save_grid
from sketchgen.outputs import claim
from sketchgen.report.tables import Table, format_number, markdown_table
from sketchgen.runtime import atomic_write, torch_threads

HERE = Path(__file__).resolve().parent
KIND = "one-vs-all reproduction"  # the output folder's marker
MODEL = "tf-dcgan"
CLASSES = ("apple", "banana")
BOTH = "apple+banana"
PER_CLASS = 100  # all the mirror holds of banana (and of simplified apple)
STEPS = 625  # a class model's budget: 200 passes over its 100 drawings at batch 32, the
# slides' last snapshot ("epoch 200")
BATCH = 32
N = 500  # samples scored per model and class (2 N for BOTH)
UNSEEN, FLOOR = slice(100, 100 + N), slice(100 + N, 100 + 2 * N)  # numpy_bitmap apple rows
NEIGHBOURS = 5  # the vote that sorts the joint model's samples
DRAWS = 8 * N  # joint samples drawn to find N of each class (fewer if a class is rare)
SCORES = tuple(FEATURE_METRICS)  # fid, kid, precision, recall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (default: report/<steps>-steps beside this file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=STEPS,
                        help="a class model's steps (the joint model's: this and twice this)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (one is fastest on a shared machine)")
    args = parser.parse_args()
    args.out = args.out or HERE / "report" / f"{args.steps}-steps"
    with claim(args.out, KIND), torch_threads(args.threads):
        real = RealSets.load()
        rows = real.score_rows("real apples (unseen)", None, {"apple": real.floor})
        for seed in args.seeds:
            for model, samples in trained(args.out / "_work" / "runs" / f"seed{seed}", seed,
                                          args.steps, real):
                rows += real.score_rows(model, seed, samples, model.startswith("joint"))
                if seed == args.seeds[0]:
                    for name, images in samples.items():
                        save_grid(images[:64], args.out / "grids" / grid_name(model, name), 8)
        results = pd.DataFrame(rows)
        atomic_write(args.out / "results.csv", lambda tmp: results.to_csv(tmp, index=False))
        text = summary(results, real, args.steps)
        atomic_write(args.out / "results.md", lambda tmp: tmp.write_text(text, encoding="utf-8"))


def grid_name(model: str, name: str) -> str:
    """``joint, equal steps`` and ``apple+banana`` -> ``joint-equal-steps-apple+banana.png``."""
    return re.sub(r"[^a-z0-9+]+", "-", f"{model} {name}".lower()) + ".png"


class RealSets:
    """The training drawings of each class, unseen apples, and their features."""

    def __init__(self, train: dict[str, np.ndarray], unseen: np.ndarray,
                 floor: np.ndarray) -> None:
        self.train, self.floor = train, floor
        self.features = {name: sg.features(images) for name, images in train.items()}
        self.features[BOTH] = np.concatenate([self.features[name] for name in CLASSES])
        self.unseen = sg.features(unseen)
        self.labels = np.repeat(np.arange(len(CLASSES)), [len(train[name]) for name in CLASSES])

    @classmethod
    def load(cls) -> RealSets:
        train = {name: load_bitmaps([name], per_class=PER_CLASS).bitmaps for name in CLASSES}
        google = load_bitmaps(["apple"], fmt="bitmap", per_class=FLOOR.stop).bitmaps
        if not np.array_equal(google[:PER_CLASS], train["apple"]):
            raise SystemExit("the rendered apples are not Google's numpy_bitmap rows 0-99")
        return cls(train, google[UNSEEN], google[FLOOR])

    def classify(self, features: np.ndarray, exclude_self: bool = False) -> np.ndarray:
        """Class index of each row: the majority of its NEIGHBOURS nearest training drawings
        (``exclude_self``: the rows are those drawings, each left out of its own vote)."""
        known = self.features[BOTH]
        distances = ((features ** 2).sum(axis=1)[:, None] + (known ** 2).sum(axis=1)[None]
                     - 2 * features @ known.T)
        if exclude_self:
            np.fill_diagonal(distances, np.inf)
        nearest = np.argsort(distances, axis=1)[:, :NEIGHBOURS]
        return (self.labels[nearest].mean(axis=1) > 0.5).astype(int)

    def score_rows(self, model: str, seed: int | None, samples: dict[str, np.ndarray],
                   sorted_by_vote: bool = False) -> list[dict]:
        """Each class's samples against the training drawings of that class (apples also
        against unseen apples), and the share of them that the vote calls bananas (not for
        classes the vote itself ``sorted_by_vote``: 0 and 1 by construction)."""
        features = {name: sg.features(images) for name, images in samples.items()
                    if len(images) >= 2}  # the joint model may draw (almost) no apples
        rows = []
        for name, images in samples.items():
            share = (float(self.classify(features[name]).mean())
                     if name in features and not (sorted_by_vote and name != BOTH) else None)
            references = {"training drawings": self.features[name]}
            if name == "apple":
                references["unseen apples"] = self.unseen
            for reference, known in references.items():
                scores = ({key: FEATURE_METRICS[key].compute(known, features[name])
                           for key in SCORES} if name in features else {})
                rows.append({"model": model, "seed": seed, "class": name,
                             "reference": reference, "n": len(images), "banana_share": share,
                             **scores})
        return rows


def trained(runs: Path, seed: int, steps: int, real: RealSets
            ) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """(model, {class: samples}) of the class models (their samples together as BOTH) and
    of the joint model at both budgets (its first 2 N draws as BOTH)."""
    settings = {"batch_size": BATCH, "seed": seed, "device": "cpu", "progress": False}
    pair = {}
    for name in CLASSES:
        model = sg.fit(MODEL, load_bitmaps([name], per_class=PER_CLASS), out=runs / name,
                       steps=steps, **settings)
        pair[name] = model.sample(N, seed=seed)
    yield "one per class", pair | {BOTH: np.concatenate(list(pair.values()))}
    both = load_bitmaps(list(CLASSES), per_class=PER_CLASS)
    for budget, joint_steps in (("equal steps", steps), ("equal epochs", 2 * steps)):
        draws = joint_draws(both, runs, joint_steps, seed, settings)
        sorted_into = real.classify(sg.features(draws))
        samples = {name: draws[sorted_into == index][:N] for index, name in enumerate(CLASSES)}
        yield f"joint, {budget}", samples | {BOTH: draws[:2 * N]}


def joint_draws(both: LabelledBitmaps, runs: Path, steps: int, seed: int, settings: dict
                ) -> np.ndarray:
    """DRAWS samples of the joint model after ``steps`` steps. One run goes on from the equal
    steps budget to twice that, so the earlier draws are kept (``joint-<steps>-steps.npy``)
    for a rerun."""
    kept = runs / f"joint-{steps}-steps.npy"
    if kept.is_file():
        return np.load(kept)
    draws = sg.fit(MODEL, both, out=runs / "joint", steps=steps, **settings).sample(DRAWS,
                                                                                   seed=seed)

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:  # a file object: np.save would add ".npy" to a path
            np.save(handle, draws)

    atomic_write(kept, write)
    return draws


def summary(results: pd.DataFrame, real: RealSets, steps: int) -> str:
    """Means over the seeds (and the spread of FID and KID) per model, class and reference;
    the vote's accuracy on real drawings."""
    rows = []
    for (model, name, reference), group in results.groupby(["model", "class", "reference"],
                                                           sort=False):
        counts = sorted(set(group.n))  # the joint model's vary by seed
        rows.append((model, name, reference, " / ".join(map(format_number, group.n))
                     if len(counts) > 1 else format_number(counts[0]),
                     _mean_sd(group.fid), _mean_sd(group.kid),
                     format_number(group.precision.mean()), format_number(group.recall.mean()),
                     _mean_sd(group.banana_share)))
    table = Table(("Model", "Class", "Reference", "N", "FID", "KID", "Precision", "Recall",
                   "Banana share"), tuple(rows), "lllrrrrrr")
    own = (real.classify(real.features[BOTH], exclude_self=True) == real.labels).mean()
    unseen = (real.classify(real.unseen) == 0).mean()
    seeds = sorted(int(s) for s in results.seed.dropna().unique())
    return (f"# One GAN per class vs one for all: {MODEL}, {steps} steps of {BATCH} per class "
            f"model, seeds {seeds} (written by run.py)\n\n"
            f"{markdown_table(table)}\n"
            "Mean ± standard deviation over the seeds that drew at least 2 images of the class "
            f"(N per seed where they differ). The {NEIGHBOURS}-nearest-neighbour vote "
            f"that sorts the joint model's samples labels {own:.1%} of the training drawings "
            f"right (each left out of its own vote), and {unseen:.1%} of {len(real.unseen)} "
            "unseen apples as apples.\n")


def _mean_sd(values: pd.Series) -> str:
    if values.isna().all():
        return "–"
    return f"{format_number(values.mean())} ± {format_number(values.std())}"


if __name__ == "__main__":
    main()
