"""Validation during training and the seconds budget, on real drawings: records at step 0,
every K steps and the last step; best.pt at the planted lowest score; no weight changed by
validation, a kill, or a resume; a seconds budget kept by an injected clock."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from test_resume import assert_identical

from sketchgen import cli, runtime
from sketchgen.errors import ConfigError, FieldError
from sketchgen.figures import read_jsonl
from sketchgen.models.gan.task import GanTask
from sketchgen.training.config import TrainConfig
from sketchgen.training.harness import train
from sketchgen.training.run_folder import RunFolder
from sketchgen.training.sampling import load_run
from sketchgen.training.validation import Validation, Validator

CATEGORIES = ("dog", "face")
STEP_SECONDS = 0.5  # what each training step takes by the fake clock (exact in binary)
VALID_SECONDS = 100.0  # what each score takes: far more than training, and never counted


def small(out, steps: int, **changes) -> TrainConfig:
    """A seconds-long CPU run. superdeep: its dropout draws from the global torch RNG, so a
    score that moved those RNGs would change the weights."""
    settings = dict(model="superdeep", categories=CATEGORIES, per_class=40, steps=steps,
                    batch_size=8, out=str(out), checkpoint_every=3, sample_every=50,
                    grad_norm_every=50, device="cpu", progress=False,
                    model_options={"width": 8})
    return TrainConfig(**(settings | changes))


class FakeClock:
    """Seconds that pass only where the test says: STEP_SECONDS per training step (the
    ``clock`` fixture) and VALID_SECONDS per score (``planted``)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    real_step = GanTask.train_step

    def timed(self, step):
        clock.now += STEP_SECONDS
        return real_step(self, step)

    monkeypatch.setattr(GanTask, "train_step", timed)
    return clock


def planted(clock: FakeClock, fid: dict[int, float], every: int) -> Validation:
    """A validation whose FID at each step is planted, which draws from every global RNG (as
    sampling and a bootstrap would) and takes VALID_SECONDS."""
    def score(task, step):
        clock.now += VALID_SECONDS
        noise = random.random() + np.random.rand() + torch.rand(()).item()
        return {"fid": fid[step], "noise": noise}

    return Validation(every=every, score=score)


def valid_records(out) -> list[dict]:
    return read_jsonl(RunFolder(out).valid_log)


def checkpoint_steps(monkeypatch) -> list[int]:
    """The steps of the checkpoints written from now on."""
    steps, real_save = [], runtime.save_checkpoint
    monkeypatch.setattr(runtime, "save_checkpoint",
                        lambda state, path: steps.append(state["step"]) or real_save(state, path))
    return steps


def test_records_at_step_zero_every_k_steps_and_the_last_with_a_checkpoint_each(
        tmp_path, clock, monkeypatch):
    saved = checkpoint_steps(monkeypatch)
    validation = planted(clock, dict.fromkeys([0, 4, 8, 10], 1.0), every=4)
    result = train(small(tmp_path / "run", 10), validation=validation, clock=clock)
    records = valid_records(tmp_path / "run")
    assert [r["step"] for r in records] == [0, 4, 8, 10]
    assert [r["train_seconds"] for r in records] == [0.0, 2.0, 4.0, 5.0]  # scores excluded
    assert [r["valid_seconds"] for r in records] == [VALID_SECONDS] * 4
    assert {"fid", "noise"} <= set(records[0])
    assert saved == [0, 3, 4, 6, 8, 9, 10]  # every 3 steps, and at each validation
    assert (result.step, result.train_seconds, result.stopped) == (10, 5.0, "steps")


def test_best_pt_holds_the_planted_best_and_validation_changes_no_weight(tmp_path, clock):
    """The lowest FID is planted at step 8 and again at 12 (a tie: the earliest wins). best.pt
    is bitwise the checkpoint of a plain 8-step run, and the validated run ends bitwise where
    the plain run resumed to 14 steps does, its global RNG states too."""
    validation = planted(clock, {0: 9.0, 4: 3.0, 8: 1.0, 12: 1.0, 14: 2.0}, every=4)
    train(small(tmp_path / "validated", 14), validation=validation, clock=clock)
    train(small(tmp_path / "plain", 8))
    best = runtime.load_checkpoint(RunFolder(tmp_path / "validated").best_checkpoint)
    plain = runtime.load_checkpoint(RunFolder(tmp_path / "plain").checkpoint)
    assert best["step"] == 8
    assert_identical(best["task"], plain["task"])
    assert load_run(tmp_path / "validated", "cpu", checkpoint="best").step == 8

    train(small(tmp_path / "plain", 14), resume=True)
    validated, plain = (runtime.load_checkpoint(RunFolder(tmp_path / name).checkpoint)
                        for name in ("validated", "plain"))
    assert_identical(validated["task"], plain["task"])
    assert_identical(validated["rng"], plain["rng"])
    assert load_run(tmp_path / "validated", "cpu").step == 14


class Killed(Exception):
    """Stands for a SIGKILL at one moment of a validation step."""


def kill_before_the_checkpoint(monkeypatch, step: int) -> None:
    """Die when the checkpoint of ``step`` is written: its record is already in valid.jsonl."""
    real_save = runtime.save_checkpoint

    def save(state, path):
        if state["step"] == step:
            raise Killed
        return real_save(state, path)

    monkeypatch.setattr(runtime, "save_checkpoint", save)


def kill_before_the_best_copy(monkeypatch, calls: int) -> None:
    """Die at the ``calls``-th copy to best.pt: its checkpoint is already written."""
    real_keep, seen = Validator.keep_best, []

    def keep_best(self):
        seen.append(1)
        if len(seen) == calls:
            raise Killed
        return real_keep(self)

    monkeypatch.setattr(Validator, "keep_best", keep_best)


@pytest.mark.parametrize("kill", [
    lambda monkeypatch: kill_before_the_checkpoint(monkeypatch, step=6),
    lambda monkeypatch: kill_before_the_best_copy(monkeypatch, calls=2),  # step 6's
], ids=["before-the-checkpoint", "before-the-best-copy"])
def test_a_run_killed_while_validating_resumes_to_the_straight_runs_files(
        tmp_path, clock, monkeypatch, kill):
    """Step 6 holds the lowest FID. Killed after its record and before its checkpoint, the run
    resumes from step 3 and drops the record; killed before its copy to best.pt, it resumes
    from step 6 and copies it then. Either way: the straight run's records (train seconds
    included), best.pt and weights."""
    fid = {0: 5.0, 3: 6.0, 6: 1.0, 9: 2.0, 10: 3.0}
    train(small(tmp_path / "straight", 10), validation=planted(clock, fid, 3), clock=clock)
    with monkeypatch.context() as patches:
        kill(patches)
        with pytest.raises(Killed):
            train(small(tmp_path / "killed", 10), validation=planted(clock, fid, 3), clock=clock)
    train(small(tmp_path / "killed", 10), resume=True, validation=planted(clock, fid, 3),
          clock=clock)
    assert valid_records(tmp_path / "killed") == valid_records(tmp_path / "straight")
    straight, killed = RunFolder(tmp_path / "straight"), RunFolder(tmp_path / "killed")
    for path in ("checkpoint", "best_checkpoint"):
        a, b = (runtime.load_checkpoint(getattr(run, path)) for run in (straight, killed))
        assert b["step"] == a["step"], path
        assert_identical(a["task"], b["task"], path)


def test_a_seconds_budget_stops_at_its_step_and_the_run_is_finished(tmp_path, clock):
    """3.2 training seconds at 0.5 a step: steps 1-6 spend 3.0, step 7 reaches 3.5 and is the
    last, validated and checkpointed; the 300 s of scores count for nothing. Resumed, the run
    takes no step."""
    fid = dict.fromkeys([0, 4, 7], 1.0)
    config = small(tmp_path / "run", 20, seconds=3.2)
    result = train(config, validation=planted(clock, fid, 4), clock=clock)
    assert (result.step, result.train_seconds, result.stopped) == (7, 3.5, "seconds")
    assert [(r["step"], r["train_seconds"]) for r in valid_records(config.out)] == [
        (0, 0.0), (4, 2.0), (7, 3.5)]
    checkpoint = runtime.load_checkpoint(RunFolder(config.out).checkpoint)
    assert (checkpoint["step"], checkpoint["train_seconds"], checkpoint["stopped"]) == (
        7, 3.5, "seconds")

    before = clock.now
    again = train(config, resume=True, validation=planted(clock, fid, 4), clock=clock)
    assert (again.step, again.train_seconds, again.stopped) == (7, 3.5, "seconds")
    assert clock.now == before  # no step taken, nothing scored
    assert len(valid_records(config.out)) == 3


def test_the_seconds_count_survives_a_resume(tmp_path, clock):
    """4 steps (2.0 s), then resumed under the 3.2 s budget: stops at step 7 as a straight run
    does; the log's time is the same count."""
    out = tmp_path / "run"
    first = train(small(out, 4, seconds=3.2), clock=clock)
    assert (first.step, first.train_seconds, first.stopped) == (4, 2.0, "steps")
    result = train(small(out, 20, seconds=3.2), resume=True, clock=clock)
    assert (result.step, result.train_seconds, result.stopped) == (7, 3.5, "seconds")
    assert [r["time"] for r in read_jsonl(RunFolder(out).log)] == [
        STEP_SECONDS * step for step in range(1, 8)]


def test_sketchgen_train_takes_a_seconds_budget(tmp_path, capsys):
    """A budget of a nanosecond: the first step spends it (no clock ticks less)."""
    out = tmp_path / "run"
    status = cli.main(["train", "superdeep", "--categories", *CATEGORIES, "--per-class", "40",
                       "--steps", "50", "--batch-size", "8", "--set", "width=8",
                       "--seconds", "1e-9", "--device", "cpu", "--no-progress",
                       "--out", str(out)])
    assert status == 0
    assert "step 1 done" in capsys.readouterr().out
    assert runtime.load_checkpoint(RunFolder(out).checkpoint)["stopped"] == "seconds"


def test_bad_validation_and_checkpoint_choices_are_named(tmp_path):
    with pytest.raises(FieldError, match=r"every must be an integer in \[1, "):
        Validation(every=0, score=lambda task, step: {})
    with pytest.raises(FieldError, match="score must be callable"):
        Validation(every=2, score="fid")
    train(small(tmp_path / "run", 2))
    with pytest.raises(FieldError, match="checkpoint must be one of 'last', 'best'"):
        load_run(tmp_path / "run", "cpu", checkpoint="first")
    with pytest.raises(ConfigError, match="no best.pt"):
        load_run(tmp_path / "run", "cpu", checkpoint="best")
    with pytest.raises(ConfigError, match="expected a dict of metrics with a number 'fid'"):
        train(small(tmp_path / "scored", 2),
              validation=Validation(every=1, score=lambda task, step: {"kid": 0.1}))
