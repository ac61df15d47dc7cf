"""Where a comparison's independent runs are trained: here, in worker processes, or on Slurm.

Owns: :func:`execute` (the jobs of a plan, by the ``[executor]`` settings, in plan order) and
the plan's progress (:class:`PlanProgress`: runs done, running and queued, with their elapsed
time, on stderr and in ``<work>/progress.txt``).

- ``local``, ``jobs = 1``: one run after another in this process.
- ``local``, ``jobs = 0`` (the default): as many at once as the machine has room for (see
  :func:`worker_count`).
- ``local``, ``jobs = N``: N worker processes (spawned, so each starts with a clean torch),
  each run with ``threads`` torch threads; on a machine with several GPUs each worker gets
  one of its own (``CUDA_VISIBLE_DEVICES``, in turn: N above the GPU count shares them).
- ``slurm``: one Slurm job per run through submitit (Meta's library behind hydra's Slurm
  launcher: it pickles the job, writes sbatch files, and reads results and errors back, with a
  local executor that tests use in its place). The run folders on the shared file system are
  the only state: a command given again skips finished runs and resumes killed ones.

Every run is seeded by its own seed and trained with the same thread count whatever the
executor, so the same config gives the same numbers with any ``jobs``.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from sketchgen.comparison.config import ExecutorSettings
from sketchgen.comparison.jobs import RunJob, RunOutcome, run_job
from sketchgen.comparison.plan import run_title
from sketchgen.runtime import atomic_write

POLL_SECONDS = 5.0  # between looks at the running jobs
PROGRESS = "progress.txt"  # in the comparison's working folder


def execute(jobs: Sequence[RunJob], settings: ExecutorSettings, work_dir: Path,
            cluster: str = "slurm") -> list[RunOutcome]:
    """Every job's outcome, in the jobs' order. ``cluster``: submitit's cluster for
    ``kind = "slurm"`` ("local" runs the same code path on this machine, for tests)."""
    progress = PlanProgress([run_title(job.plan) for job in jobs], work_dir / PROGRESS)
    if settings.kind == "slurm":
        return _on_slurm(jobs, settings, work_dir, progress, cluster)
    workers = worker_count(settings, jobs)
    if workers == 1:
        outcomes = []
        for index, job in enumerate(jobs):
            progress.started(index)
            outcomes.append(run_job(job))
            progress.finished(index)
        return outcomes
    context = multiprocessing.get_context("spawn")
    gpus = context.Queue()
    for worker in range(workers):
        gpus.put(worker % gpu_count if (gpu_count := _gpu_count(jobs)) > 1 else None)
    with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context,
                                                initializer=_take_gpu,
                                                initargs=(gpus,)) as pool:
        futures = [pool.submit(run_job, job) for job in jobs]
        return _gather(futures, progress, lambda future: future.running(), workers)


def worker_count(settings: ExecutorSettings, jobs: Sequence[RunJob]) -> int:
    """Local worker processes: ``settings.jobs``, or for 0 one per GPU (CUDA; one on MPS) or
    one per ``threads`` CPU cores; never more than there are jobs."""
    workers = settings.jobs
    if not workers:
        on_cpu = not jobs or jobs[0].device == "cpu"
        workers = (os.cpu_count() or 1) // settings.threads if on_cpu else _gpu_count(jobs)
    return max(1, min(workers, len(jobs)))


def _gpu_count(jobs: Sequence[RunJob]) -> int:
    """The CUDA devices the workers share, if the jobs run on CUDA; else 0."""
    if not jobs or not jobs[0].device.startswith("cuda"):
        return 0
    import torch

    return torch.cuda.device_count()


def _take_gpu(gpus: Any) -> None:
    """A worker's first act, before torch touches CUDA: see only the GPU it was given."""
    gpu = gpus.get()
    if gpu is not None:  # the gpu-th of those visible to the comparison
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        os.environ["CUDA_VISIBLE_DEVICES"] = visible.split(",")[gpu] if visible else str(gpu)


def _on_slurm(jobs: Sequence[RunJob], settings: ExecutorSettings, work_dir: Path,
              progress: PlanProgress, cluster: str) -> list[RunOutcome]:
    import submitit  # optional: pip install 'sketchgen[slurm]'

    executor = submitit.AutoExecutor(folder=work_dir / "slurm", cluster=cluster)
    executor.update_parameters(
        timeout_min=settings.time_minutes, gpus_per_node=settings.gpus_per_run,
        cpus_per_task=settings.cpus_per_run, name="sketchgen",
        slurm_additional_parameters=dict(settings.slurm_options),
        **({"slurm_partition": settings.partition} if settings.partition else {}))
    submitted = executor.map_array(run_job, list(jobs))
    return _gather(submitted, progress, lambda job: job.state == "RUNNING", len(submitted))


def _gather(handles: list[Any], progress: PlanProgress, is_running: Callable[[Any], bool],
            at_once: int) -> list[RunOutcome]:
    """Wait for every handle (a future or a submitit job), keeping the progress up to date;
    the first failure is raised once the others are done or cancelled. ``at_once``: how
    many can run at a time (a process pool marks one more as running than it runs: the one
    it has queued), so only the first ``at_once`` unfinished ones, in order, are counted."""
    pending = list(range(len(handles)))
    while pending:
        for index in [index for index in pending if handles[index].done()]:
            pending.remove(index)
            progress.finished(index)
        for index in pending[:at_once]:
            if is_running(handles[index]):
                progress.started(index)
        if pending:
            time.sleep(POLL_SECONDS)
    return [handle.result() for handle in handles]


class PlanProgress:
    """Which runs of the plan are done, running and queued; one line on each change."""

    def __init__(self, titles: list[str], path: Path) -> None:
        self.titles, self.path = titles, path
        self.began: dict[int, float] = {}
        self.done: dict[int, float] = {}  # index -> seconds it ran
        path.parent.mkdir(parents=True, exist_ok=True)

    def started(self, index: int) -> None:
        if index not in self.began:
            self.began[index] = time.perf_counter()
            self._show()

    def finished(self, index: int) -> None:
        if index not in self.done:
            self.began.setdefault(index, time.perf_counter())
            self.done[index] = time.perf_counter() - self.began[index]
            self._show()

    def _show(self) -> None:
        now = time.perf_counter()
        running = [i for i in self.began if i not in self.done]
        queued = len(self.titles) - len(self.done) - len(running)
        line = (f"runs: {len(self.done)} done, {len(running)} running, {queued} queued"
                + "".join(f"; {self.titles[i]} {(now - self.began[i]) / 60:.1f} min"
                          for i in running))
        tqdm.write(line, file=sys.stderr)
        lines = [line, *(f"done     {self.titles[i]} ({seconds / 60:.1f} min)"
                         for i, seconds in sorted(self.done.items())),
                 *(f"running  {self.titles[i]} ({(now - self.began[i]) / 60:.1f} min)"
                   for i in running),
                 *(f"queued   {title}" for i, title in enumerate(self.titles)
                   if i not in self.began)]
        atomic_write(self.path, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
