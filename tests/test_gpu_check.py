"""The GPU self-check (``python -m sketchgen.gpu_check``) on a machine without a GPU: the
no-CUDA line, every check that needs no CUDA passing on the CPU at the tiny scale, the
CPU-vs-device comparisons with the CPU standing in for the GPU, and the runner's lines."""

from __future__ import annotations

import dataclasses
import importlib
import io
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from sketchgen.gpu_check import context, device_checks, runner, train_checks
from sketchgen.gpu_check.context import Check, CheckFailed, Context
from sketchgen.gpu_check.runner import Outcome
from sketchgen.gpu_check.train_checks import TrainedRun

LINE = re.compile(r"^(PASS|FAIL|SKIP)  (.+?) +(\d+\.\d s|-)  (.+)$")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a torch without CUDA")
no_gpu = pytest.mark.skipif(torch.cuda.is_available() or runner.NVIDIA_DRIVER.exists(),
                            reason="checks a machine without a GPU")

FAKE_BENCH_TRAIN = '''
import pytest

@pytest.mark.parametrize(("model", "size"), [("sngan", 28), ("sngan", 64)])
def test_train_throughput_vs_naive_loop(benchmark, model, size):
    benchmark.pedantic(lambda: None, rounds=1)
    benchmark.extra_info.update(model=model, size=size, device="cpu", images_per_s=1234.5,
                                speedup_vs_naive=1.25)
'''


@pytest.fixture
def fake_benchmarks(tmp_path) -> Path:
    """A stand-in for benchmarks/bench_train.py that finishes at once (the real one takes
    over a minute on a CPU; its case ids are checked against the real file below)."""
    folder = tmp_path / "checkout" / "benchmarks"
    folder.mkdir(parents=True)
    (folder / "bench_train.py").write_text(textwrap.dedent(FAKE_BENCH_TRAIN))
    return folder


@no_gpu
def test_without_cuda_the_default_run_prints_one_line_and_exits_0(capsys):
    assert runner.main([]) == 0
    assert capsys.readouterr().out == (f"no CUDA device: nothing to check (torch "
                                       f"{torch.__version__}, CUDA not available)\n")


@no_cuda
def test_an_nvidia_driver_with_a_torch_that_sees_no_cuda_fails(tmp_path, monkeypatch, capsys):
    """A GPU machine whose torch is the CPU build must not pass as 'nothing to check'."""
    driver = tmp_path / "version"
    driver.write_text("NVRM version: 550.54\n")
    monkeypatch.setattr(runner, "NVIDIA_DRIVER", driver)
    assert runner.main([]) == 1
    assert "install a CUDA build of torch" in capsys.readouterr().out


# What the CUDA-only checks that compare the device with the CPU say when the CPU stands in
# for the GPU (torchrun on two gloo ranks): run here, so they cannot rot either.
ACROSS_DEVICES = {
    "sample sngan cuda vs cpu": "100% of 8 samples identical to the CPU's",
    "sample sketch-rnn cuda vs cpu": "100% of 8 samples identical to the CPU's",
    "torch render cuda vs cpu": "largest pixel difference 0 (bound 1), gradient relative "
                                "difference 0.0e+00",
    "fid cuda vs cpu": "(relative difference 0.0e+00, bound 1e-02)",
    "torchrun dcgan (nccl)": "2 ranks, backend gloo on cpu, step 2",
}


def test_cpu_mode_passes_every_check_that_needs_no_cuda(tmp_path, fake_benchmarks):
    """``--device cpu --scale tiny``, then the comparisons with the CPU on the same runs (one
    test: the trained runs are shared, and xdist would train them once per worker)."""
    ctx = Context(torch.device("cpu"), context.SCALES["tiny"], tmp_path / "work", ranks=2,
                  benchmarks=fake_benchmarks)
    ctx.work.mkdir()
    out = io.StringIO()
    runner.run_checks(runner.CHECKS, ctx, out)
    lines = out.getvalue().splitlines()
    parsed = [LINE.match(line) for line in lines]
    assert all(parsed), lines
    outcomes = {match[2]: (match[1], match[4]) for match in parsed}
    assert list(outcomes) == [check.name for check in runner.CHECKS]
    for check in runner.CHECKS:
        status, detail = outcomes[check.name]
        expected = ("SKIP", "(needs CUDA)") if check.needs_cuda else ("PASS", detail)
        assert (status, detail) == expected, check.name
    assert "2 steps + 1 resumed" in outcomes["train sngan"][1]
    assert "sngan 28 px 1,234 images/s, 1.25x the DataLoader loop" in outcomes["bench train"][1]
    assert len({match.start(4) for match in parsed}) == 1  # the figures start in one column

    checks = {check.name: dataclasses.replace(check, needs_cuda=False)
              for check in runner.CHECKS}
    said = {name: runner.run_check(checks[name], ctx) for name in ACROSS_DEVICES}
    assert {name: outcome.status for name, outcome in said.items()} == dict.fromkeys(
        ACROSS_DEVICES, "PASS"), said
    for name, expected in ACROSS_DEVICES.items():
        assert expected in said[name].detail, said[name]
    # a classifier that does not learn fails (tiny's few steps stay at chance: no bound there)
    strict = dataclasses.replace(ctx, scale=dataclasses.replace(ctx.scale, min_accuracy=1.01))
    with pytest.raises(CheckFailed, match=r"test accuracy .* \(expected >= 1.01\)"):
        device_checks.classifier_check(strict)


def test_options_that_change_nothing_fail(tmp_path):
    run = TrainedRun(tmp_path, 3, 1, {}, {"autocast": set(), "scaler": False, "compiled": 0})
    with pytest.raises(CheckFailed, match="--amp on CUDA, but the task entered no autocast"):
        train_checks._applied(run, amp=True, compile=False)
    with pytest.raises(CheckFailed, match="--compile on CUDA, but the task compiled no module"):
        train_checks._applied(run, amp=False, compile=True)
    assert train_checks._applied(run, amp=False, compile=False) == []
    used = {"autocast": {"float16"}, "scaler": True, "compiled": 2}
    assert train_checks._applied(TrainedRun(tmp_path, 3, 0, {}, used), True, True) == [
        "autocast float16, GradScaler on", "2 modules compiled"]


def test_torchrun_fails_off_the_device_or_with_a_broken_nccl(tmp_path, monkeypatch):
    """What rank 0 reports decides: a run that fell back to the CPU, or a one-GPU NCCL
    all-reduce that gave the wrong sum, is a failure (a torchrun that never starts on a
    GPU here is faked: its probe line is all the check reads before the checkpoint)."""
    probe = {"world_size": 1, "backend": None, "device": "cpu", "nccl_alone": False}

    def torchrun(command, **options):
        return subprocess.CompletedProcess(command, 0, context.PROBE + json.dumps(probe), "")

    monkeypatch.setattr(subprocess, "run", torchrun)
    ctx = Context(torch.device("cuda"), context.SCALES["tiny"], tmp_path)
    with pytest.raises(CheckFailed, match="rank 0 trained on cpu, not cuda"):
        train_checks.torchrun_check(ctx)
    probe["device"] = "cuda:0"
    with pytest.raises(CheckFailed, match="NCCL's all-reduce of 1 on one rank did not give 1"):
        train_checks.torchrun_check(ctx)


def test_a_failing_check_is_one_fail_line_and_exit_status_1(monkeypatch, capsys):
    def broken(ctx):
        raise ValueError("first line of the reason\nsecond line")

    checks = (Check("broken", broken, 1), Check("fine", lambda ctx: "a figure", 1),
              Check("cuda only", lambda ctx: "never run", 1, needs_cuda=True))
    monkeypatch.setattr(runner, "CHECKS", checks)
    assert runner.main(["--device", "cpu"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"sketchgen GPU self-check on cpu, scale normal: torch {torch.__version__}"
    assert [LINE.match(line).group(1, 2, 4) for line in lines[1:4]] == [
        ("FAIL", "broken", "ValueError: first line of the reason"),
        ("PASS", "fine", "a figure"),
        ("SKIP", "cuda only", "(needs CUDA)"),
    ]
    assert re.fullmatch(r"3 checks in \d+\.\d s: 1 passed, 1 failed, 1 skipped; FAILED: broken",
                        lines[4])
    assert len(lines) == 5


def test_a_failed_product_is_named_by_the_checks_that_need_it(tmp_path):
    ctx = Context(torch.device("cpu"), context.SCALES["tiny"], tmp_path)
    calls = []

    def make():
        calls.append(1)
        raise CheckFailed("no data")

    for _ in range(2):
        with pytest.raises(CheckFailed):
            ctx.product("run x", make)
    outcome = runner.run_check(Check("user", lambda c: c.product("run x", make), 1), ctx)
    assert outcome.detail == "needs run x, which failed: no data" and calls == [1]


def test_line_format():
    assert runner.format_outcome(Outcome("PASS", "train sngan", 3.14, "12 steps"), 14) == (
        "PASS  train sngan       3.1 s  12 steps")
    assert runner.format_outcome(Outcome("SKIP", "x", None, "(needs CUDA)"), 3) == (
        "SKIP  x          -  (needs CUDA)")
    assert context.one_line(CheckFailed("mean 0.9 > 0.56")) == "mean 0.9 > 0.56"
    assert context.one_line(RuntimeError("x" * 400)).endswith("...")
    assert len(context.one_line(RuntimeError("x" * 400))) == 300


def test_list_and_only(capsys):
    assert runner.main(["--list", "--only", "sample"]) == 0
    names = [line.split("  ")[0] for line in capsys.readouterr().out.splitlines()[:-1]]
    assert names == ["sample sngan", "sample sngan cuda vs cpu", "sample sketch-rnn",
                     "sample sketch-rnn cuda vs cpu"]
    with pytest.raises(SystemExit):
        runner.main(["--only", "no such check"])


def test_the_training_benchmark_has_the_cases_the_check_runs(monkeypatch):
    """Its parametrize list, imported (pytest names a case "model-size"; collecting the file
    in a pytest subprocess took seconds)."""
    # this checkout's benchmarks/ (tox installs the package itself into site-packages)
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "benchmarks"))
    for name in ("bench_train", "common"):  # benchmarks/ modules, imported here only
        monkeypatch.delitem(sys.modules, name, raising=False)
    bench_train = importlib.import_module("bench_train")
    ids = {f"{model}-{size}" for model, size in bench_train.CASES}
    for scale in context.SCALES.values():
        assert set(scale.bench_cases) <= ids
