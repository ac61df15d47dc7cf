"""Exact resume on CPU: N steps straight equal k + resume + (N - k) steps bitwise, also after a
real SIGKILL of a `sketchgen train` subprocess."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from sketchgen import runtime
from sketchgen.figures import read_jsonl
from sketchgen.training.config import TrainConfig
from sketchgen.training.harness import train
from sketchgen.training.run_folder import CHECKPOINT
from sketchgen.training.sampling import load_run

CATEGORIES = ("dog", "face")


def config(out, steps: int, model: str = "sngan", sample_every: int = 5) -> TrainConfig:
    return TrainConfig(model=model, categories=CATEGORIES, per_class=40, steps=steps,
                       batch_size=8, out=str(out), checkpoint_every=5, sample_every=sample_every,
                       grad_norm_every=5, device="cpu", progress=False,
                       model_options={"width": 8})


def assert_identical(a, b, where: str = "state") -> None:
    """Nested state dicts equal bitwise (tensors with torch.equal, everything else with ==)."""
    if isinstance(a, torch.Tensor):
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def final_state(run_dir) -> dict:
    checkpoint = runtime.load_checkpoint(run_dir / CHECKPOINT)
    return {"task": checkpoint["task"], "rng": checkpoint["rng"], "step": checkpoint["step"]}


# sngan: spectral-norm power iterations and EMA; superdeep: dropout (global RNG) + batch norm
@pytest.mark.parametrize("model", ["sngan", "superdeep"])
def test_twenty_steps_equal_ten_resume_ten(tmp_path, model):
    train(config(tmp_path / "straight", 20, model))
    train(config(tmp_path / "resumed", 10, model))
    train(config(tmp_path / "resumed", 20, model), resume=True)
    assert_identical(final_state(tmp_path / "straight"), final_state(tmp_path / "resumed"))
    steps = [r["step"] for r in read_jsonl(tmp_path / "resumed" / "log.jsonl")]
    assert steps == list(range(1, 21))


def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path):
    steps = 150  # ~10 ms each: the kill lands well before the end
    out = tmp_path / "killed"
    command = [sys.executable, "-m", "sketchgen", "train", "sngan",
               "--categories", *CATEGORIES, "--per-class", "40", "--steps", str(steps),
               "--batch-size", "8", "--checkpoint-every", "5", "--sample-every", "50",
               "--grad-norm-every", "5", "--set", "width=8", "--device", "cpu",
               "--no-progress", "--out", str(out)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not (out / CHECKPOINT).exists():
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        time.sleep(random.uniform(0.0, 0.3))  # somewhere between two checkpoints
        process.send_signal(signal.SIGKILL)
        assert process.wait() == -signal.SIGKILL
    finally:
        process.kill()
        process.stderr.close()
    killed_at = runtime.load_checkpoint(out / CHECKPOINT)["step"]  # intact despite the kill
    assert 0 < killed_at < steps

    resumed = subprocess.run([*command, "--resume"], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    train(config(tmp_path / "uninterrupted", steps, sample_every=50))
    assert_identical(final_state(tmp_path / "uninterrupted"), final_state(out))
    assert [r["step"] for r in read_jsonl(out / "log.jsonl")] == list(range(1, steps + 1))
    assert not list(out.glob(".*.tmp"))


def test_a_checkpoint_from_before_the_seconds_budget_loads_and_resumes(tmp_path):
    """Written without train_seconds and stopped: read as 0.0 seconds, stopped on steps."""
    out = tmp_path / "old"
    train(config(out, 4))
    checkpoint = runtime.load_checkpoint(out / CHECKPOINT)
    del checkpoint["train_seconds"], checkpoint["stopped"]
    torch.save(checkpoint, out / CHECKPOINT)
    assert load_run(out, "cpu").step == 4
    result = train(config(out, 6), resume=True)
    assert (result.step, result.stopped) == (6, "steps")
    assert 0.0 < result.train_seconds == runtime.load_checkpoint(out / CHECKPOINT)["train_seconds"]
