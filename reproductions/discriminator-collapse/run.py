"""Discriminator collapse (reference 001): brownlee-cgan trained as ``config.toml`` says, then
the figures that show the collapse, from the run's own log and checkpoint.

    python3 reproductions/discriminator-collapse/run.py

Trains (or resumes, or finds finished) ``runs/discriminator-collapse`` on one torch thread
(CPU results differ in the last bits between thread counts, so the committed log is exact
only on one), then writes into the folder of this script: ``log.jsonl`` and
``learning.gif`` (copies from the run), ``collapse.png`` (D's loss, D(x) and D(G(z)) over
the steps) and ``figures.json`` (the numbers README.md quotes). The samples counted there are
300 drawn from the last checkpoint with ``sketchgen sample``'s default seed.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from sketchgen.config import SAMPLE_SEED  # noqa: E402
from sketchgen.figures import read_jsonl  # noqa: E402
from sketchgen.runtime import torch_threads  # noqa: E402
from sketchgen.training.config import load_toml  # noqa: E402
from sketchgen.training.harness import COLLAPSE_LOSS, COLLAPSE_STEPS, train  # noqa: E402
from sketchgen.training.run_folder import RunFolder  # noqa: E402
from sketchgen.training.sampling import load_run, sample_images, sample_labels  # noqa: E402

HERE = Path(__file__).resolve().parent
SAMPLES = 300  # as the README's "all 300 samples are one blank image"
QUOTED_STEPS = (100, 500, 600)  # the README's figures, and the last GIF frames
QUOTED_D_FAKE = (0.005, 0.001)  # the README's D(G(z)) figures
WINDOW = 10  # steps either side of a quoted step in the smoothed figures (one step is noisy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(HERE / "config.toml"))
    parser.add_argument("--out", default=str(HERE), help="where the report files go")
    args = parser.parse_args()
    config = load_toml(args.config)
    with torch_threads(1):
        train(config, resume=True)
        samples = drawn_samples(config.out)
    run = RunFolder(config.out)
    out = Path(args.out)
    records = read_jsonl(run.log)
    figures = {"log": log_figures(records), "samples": sample_figures(samples)}
    (out / "figures.json").write_text(json.dumps(figures, indent=2) + "\n")
    plot(records, out / "collapse.png", title=f"{config.model}: {len(config.categories)} "
                                               f"categories x {config.per_class}")
    if run.log.resolve() != (out / "log.jsonl").resolve():
        shutil.copyfile(run.log, out / "log.jsonl")
        shutil.copyfile(run.gif, out / "learning.gif")
    print(json.dumps(figures, indent=2))


def drawn_samples(run_dir: str) -> np.ndarray:
    """``SAMPLES`` images (uint8 (n, size, size)) of the last checkpoint, the classes in turn."""
    loaded = load_run(run_dir, device="cpu")
    return sample_images(loaded, sample_labels(loaded, SAMPLES), seed=SAMPLE_SEED)


def log_figures(records: list[dict]) -> dict:
    """D's figures at the quoted steps (the step's value and the mean over +-WINDOW steps),
    the first steps D(G(z)) fell below the quoted values (that step's value, the mean), the
    first step D's loss fell below the warning's threshold, and the warning itself."""
    by_step = {r["step"]: r for r in records}

    def around(step: int, key: str) -> float:
        values = [by_step[s][key] for s in range(step - WINDOW, step + WINDOW + 1)
                  if s in by_step]
        return float(np.mean(values))

    quoted = {str(step): {key: {"at": by_step[step][key], "mean_around": around(step, key)}
                          for key in ("loss_d", "d_real", "d_fake", "loss_g")}
              for step in QUOTED_STEPS if step in by_step}
    d_fake_below = {str(level): {
        "at": next((r["step"] for r in records if r["d_fake"] < level), None),
        "mean_around": next((r["step"] for r in records if around(r["step"], "d_fake") < level),
                            None)} for level in QUOTED_D_FAKE}
    low = [r["step"] for r in records if r["loss_d"] < COLLAPSE_LOSS]
    warned = [r for r in records if "warning" in r]
    return {
        "steps": records[-1]["step"],
        "at_steps": quoted,
        "min_loss_d": min(r["loss_d"] for r in records),
        "min_d_fake": min(r["d_fake"] for r in records),
        "first_step_d_fake_below": d_fake_below,
        "first_step_loss_d_below_threshold": low[0] if low else None,
        "steps_loss_d_below_threshold": len(low),
        "longest_stretch_loss_d_below_threshold": longest_stretch(low),
        "warning": {"step": warned[0]["step"], "text": warned[0]["warning"]} if warned else None,
    }


def longest_stretch(steps: list[int]) -> int:
    """The most consecutive steps in the sorted ``steps``."""
    longest = current = 0
    for previous, step in zip([None, *steps], steps, strict=False):
        current = current + 1 if previous == step - 1 else 1
        longest = max(longest, current)
    return longest


def sample_figures(samples: np.ndarray) -> dict:
    """How blank and how alike the samples are: images with no pixel above 0 (G's tanh at
    its floor everywhere), distinct images, and the ink (pixels > 127) they hold."""
    flat = samples.reshape(len(samples), -1)
    return {
        "count": len(samples),
        "blank": int((flat.max(axis=1) == 0).sum()),
        "distinct": len(np.unique(flat, axis=0)),
        "pixels_at_zero": float((flat == 0).mean()),
        "ink_fraction": float((flat > 127).mean()),
    }


def plot(records: list[dict], path: Path, title: str) -> None:
    """D's loss (log scale) with the median the warning reads, above D(x) and D(G(z)),
    against the step; the warning's step marked in both."""
    steps = [r["step"] for r in records]
    losses = np.array([r["loss_d"] for r in records])
    medians = [np.median(losses[max(0, i - COLLAPSE_STEPS + 1):i + 1])
               for i in range(COLLAPSE_STEPS - 1, len(losses))]
    figure, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(7, 5.5))
    top.semilogy(steps, losses, lw=0.8, label="D loss (real + fake)")
    top.semilogy(steps[COLLAPSE_STEPS - 1:], medians, color="black", lw=1.2,
                 label=f"its median over {COLLAPSE_STEPS} steps")
    top.axhline(COLLAPSE_LOSS, color="grey", ls="--", lw=0.8, label="warning threshold")
    for record in (r for r in records if "warning" in r):
        top.axvline(record["step"], color="red", ls=":", lw=1.0,
                    label=f"the warning (step {record['step']})")
        bottom.axvline(record["step"], color="red", ls=":", lw=1.0)
    top.set_ylabel("loss")
    top.legend()
    top.set_title(title)
    bottom.plot(steps, [r["d_real"] for r in records], lw=0.8, label="D(x), real")
    bottom.semilogy(steps, [r["d_fake"] for r in records], lw=0.8, label="D(G(z)), fake")
    bottom.set_ylabel("mean D output (log scale)")
    bottom.set_xlabel("step")
    bottom.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
