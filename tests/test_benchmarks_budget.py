"""The report's benchmark subset (``tox -e bench``: ``pytest benchmarks -m report``) stays
within its 3-minute budget by what it selects (issue 16 item 4): one GAN training case, none
of the slow samplers, none of the CPU levers (``tox -e benchmarks`` runs every benchmark).
Checked by collection only: no benchmark runs here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# minutes, not seconds, on a 2-core CPU: in the full suite only (tox -e benchmarks)
FULL_SUITE_ONLY = ("bench_cpu_levers.py", "bench_ddpm.py", "bench_sketch_transformer.py",
                   "bench_torch_render.py")


def collected_for_the_report() -> list[str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTEST_")}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "benchmarks", "--collect-only", "-q",
         "-p", "no:cacheprovider", "-m", "report"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    return [line for line in run.stdout.splitlines() if "::" in line]


def test_the_report_subset_leaves_the_slow_benchmarks_to_the_full_suite():
    report = collected_for_the_report()
    assert report
    assert [node for node in report if node.split("::")[0].endswith(FULL_SUITE_ONLY)] == []
    assert [node for node in report if "bench_train.py" in node] == [
        "benchmarks/bench_train.py::test_train_throughput_vs_naive_loop[dcgan-28]"]
    assert all((REPO / "benchmarks" / name).is_file() for name in FULL_SUITE_ONLY)
