"""Sketch-RNN, Ha & Eck 2018, Table 1: reconstruction loss L_R and KL loss L_KL on the test
split, at the checkpoint with the best validation objective, for an unconditional
(decoder-only) model and VAEs over a small sweep of the KL weight w_KL, per class.

    QUICKDRAW_MIRROR=../shared/quickdraw OMP_NUM_THREADS=1 \\
        python3 reproductions/sketch-rnn/run.py --out reproductions/sketch-rnn/report
    python3 reproductions/sketch-rnn/run.py --config reproductions/sketch-rnn/google.toml \\
        --out runs/sketch-rnn-google --runs runs/sketch-rnn-google-runs

A config (TOML) names the classes (Google's Sketch-RNN files, ``sketchrnn/<class>.npz`` of the
mirror or of Google's bucket), the w_KL values, and the ``[train]`` settings every run shares
(a ``sketchgen train --config`` table; ``[train.model_options]`` are Sketch-RNN's fields). Each
row is one ``sketchgen.training.harness.train`` run, resumed if it is there already, so an
interrupted sweep continues exactly. Files with Google's train / valid / test keep them; the
mirror's (the test split alone) are split by seed (``sketchgen.models.sketch_rnn.task``).
The protocol is magenta's: every ``eval_every`` steps the validation costs; at each new best
validation objective the test costs, so the last test costs of a run's log are its figures.
``--masked-pen`` puts magenta's inference-mode L_R in the table (pen loss masked after the end
of each sketch) instead of its training-mode L_R; results.json holds both.
Writes ``OUT/table.md``, ``OUT/results.json`` and ``OUT/logs/<run>.jsonl`` (the evaluation
steps of each run's log).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sketchgen.config import (
    DRAWINGS_PER_CLASS,
    MAX_CLASSES,
    check_fields,
    from_mapping,
    from_toml,
    setting,
)
from sketchgen.data.datasets import load_drawings
from sketchgen.errors import ConfigError, FieldError
from sketchgen.figures import read_jsonl
from sketchgen.models.sketch_rnn.config import KL
from sketchgen.outputs import check_name, claim
from sketchgen.runtime import atomic_write
from sketchgen.training.config import TrainConfig
from sketchgen.training.harness import train
from sketchgen.training.run_folder import RunFolder

HERE = Path(__file__).resolve().parent
KIND = "sketch-rnn table 1"  # the output folder's marker
SWEPT = ("mode", "kl_weight")  # set by each row, not by [train.model_options]


@dataclass(frozen=True)
class Table1:
    """One sweep: the classes, the w_KL values and the settings every run shares."""

    label: str  # what the data and budget are: the table's caption
    datasets: tuple[str, ...] = setting(max_items=MAX_CLASSES)  # class names, one model each
    kl_weights: tuple[float, ...] = setting(within=KL, max_items=100)  # the vae rows' w_KL
    unconditional: bool = True  # a decoder-only row per class (w_KL 0)
    per_class: int | None = setting(None, within=DRAWINGS_PER_CLASS)  # None: whole files
    # [train]: TrainConfig of every run (model_options: SketchRNNConfig fields but the row's)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        for name in ("datasets", "kl_weights"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        check_fields(self)
        for name in self.datasets:
            check_name(name, "datasets")
        if fixed := sorted(set(self.train.model_options) & set(SWEPT)):
            raise FieldError("train.model_options", f"cannot set {', '.join(fixed)}: the rows do")
        if self.train.model != "sketch-rnn":
            raise FieldError("train.model", f"must be 'sketch-rnn', got {self.train.model!r}")

    def rows(self) -> list[tuple[str, str, float]]:
        """(class, mode, w_KL) of every run, in the paper's order."""
        models = [("unconditional", 0.0)] * self.unconditional
        models += [("vae", weight) for weight in self.kl_weights]
        return [(name, mode, weight) for name in self.datasets for mode, weight in models]

    def config(self, name: str, mode: str, weight: float, runs: Path) -> TrainConfig:
        """The TrainConfig of one row (its data are given to ``train`` in memory)."""
        options = {**self.train.model_options, "mode": mode}
        if mode == "vae":
            options["kl_weight"] = weight
        return dataclasses.replace(self.train, out=str(runs / run_name(name, mode, weight)),
                                   model_options=options, categories=())


def run_name(name: str, mode: str, weight: float) -> str:
    return f"{name}-{mode}" if mode != "vae" else f"{name}-vae-wkl{weight:g}"


def best_validation(log: list[dict[str, Any]]) -> dict[str, Any]:
    """The costs of a run at its best-validation step: the last step of its log with test
    costs (the task adds them at each new best), and that step's validation costs."""
    tested = [record for record in log if "loss_recon_test" in record]
    if not tested:
        raise ConfigError("no step of the run has test costs: is eval_every > 0 and at most "
                          "steps, and are there validation and test sketches?")
    best = tested[-1]
    return {"step": best["step"], "last_step": log[-1]["step"],
            **{key: value for key, value in best.items() if key.endswith(("_valid", "_test"))}}


def run_row(table: Table1, name: str, mode: str, weight: float, runs: Path) -> dict[str, Any]:
    """Train (or resume) one row and return its costs at the best-validation step. The class
    is read from $QUICKDRAW_MIRROR if set, else from Google's bucket."""
    data = load_drawings([name], fmt="sketchrnn", per_class=table.per_class)
    config = table.config(name, mode, weight, runs)
    print(f"== {run_name(name, mode, weight)}", file=sys.stderr)
    train(config, resume=True, data=data)
    log = read_jsonl(RunFolder(config.out).log)
    return {"dataset": name, "mode": mode, "kl_weight": weight, "run": config.out,
            "log": [{k: v for k, v in r.items() if k != "grad_norms"} for r in log
                    if "loss_recon_valid" in r],
            **best_validation(log)}


def table_markdown(table: Table1, results: list[dict[str, Any]], masked_pen: bool) -> str:
    """The paper's layout: rows dataset / model / w_KL; columns L_R and L_KL (test split)."""
    recon = "loss_recon_masked_test" if masked_pen else "loss_recon_test"
    how = ("magenta's inference mode: pen loss masked after the end" if masked_pen
           else "magenta's training-mode cost: pen loss over the padding too")
    lines = [f"Test split, at the step with the best validation objective; L_R: {how}. "
             f"{table.label}.", "",
             "| Dataset | Model | w_KL | L_R | L_KL | best step / steps |",
             "|---|---|---|---|---|---|"]
    for r in results:
        model = "Unconditional" if r["mode"] == "unconditional" else "VAE"
        weight = "-" if r["mode"] == "unconditional" else f"{r['kl_weight']:.2f}"
        kl = f"{r['loss_kl_test']:.3f}" if "loss_kl_test" in r else "-"
        lines.append(f"| {r['dataset']} | {model} | {weight} | {r[recon]:.3f} | {kl} | "
                     f"{r['step']} / {r['last_step']} |")
    return "\n".join(lines) + "\n"


def write_report(out: Path, table: Table1, results: list[dict[str, Any]],
                 masked_pen: bool) -> None:
    for r in results:
        path = out / "logs" / f"{Path(r['run']).name}.jsonl"
        lines = "".join(json.dumps(record) + "\n" for record in r["log"])
        atomic_write(path, lambda tmp, text=lines: tmp.write_text(text))
    summary = [{k: v for k, v in r.items() if k not in ("log", "run")} for r in results]
    atomic_write(out / "results.json", lambda tmp: tmp.write_text(
        json.dumps({"label": table.label, "rows": summary}, indent=1) + "\n"))
    text = table_markdown(table, results, masked_pen)
    atomic_write(out / "table.md", lambda tmp: tmp.write_text(text))
    print(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=HERE / "mirror.toml",
                        help="the sweep (default: mirror.toml beside this script)")
    parser.add_argument("--out", type=Path, required=True, help="the report folder")
    parser.add_argument("--runs", type=Path, default=Path("runs/sketch-rnn-table1"),
                        help="where the run folders go (checkpoints: keep them out of git)")
    parser.add_argument("--masked-pen", action="store_true",
                        help="L_R of magenta's inference mode (pen loss masked after the end)")
    args = parser.parse_args(argv)
    try:
        table = from_toml(args.config, lambda tables: from_mapping(Table1, tables))
        with claim(args.out, KIND):
            results = [run_row(table, *row, args.runs) for row in table.rows()]
            write_report(args.out, table, results, args.masked_pen)
    except ConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
