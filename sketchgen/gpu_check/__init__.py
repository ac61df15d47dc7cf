"""``python -m sketchgen.gpu_check``: a GPU machine checks every CUDA path the README claims.

Nothing in this project ran on a GPU while it was written. Each check here does a few steps
of real work on the device -- GAN training with ``--amp`` and ``--compile``, Sketch-RNN
training (it applies neither), resume, sampling, the torch renderer against cairo, the
classifier, FID, torchrun with NCCL, the training and render benchmarks -- and returns a
one-line figure or raises. The runner times every check and prints one aligned line per
check, then a summary line::

    PASS  train sngan --amp          4.1 s  50 steps + 10 resumed, loss_d 1.23, ...
    FAIL  train sngan --compile     61.0 s  BackendCompilerFailed: ...
    SKIP  torchrun dcgan (nccl)          -  (needs CUDA)

The exit status is 1 if any check failed, else 0. Without CUDA (and the default ``--device
cuda``) it prints one line and exits 0. ``--device cpu`` runs the same checks on the CPU
and reports the CUDA-only ones as SKIP; ``tests/test_gpu_check.py`` runs that at ``--scale
tiny`` so the checks cannot rot on machines without a GPU.

Data: Google category names only (``context.CATEGORIES``), read through
``sketchgen.data.datasets`` from ``--mirror`` / ``$QUICKDRAW_MIRROR`` or, without either,
Google's bucket.

Owns: ``context`` (scales, tolerances, the shared context and the check type),
``train_checks`` (training, resume, sampling, torchrun), ``device_checks`` (renderer,
classifier, FID, benchmarks) and ``runner`` (the registry of checks, timing, output, ``main``).
May import: everything in ``sketchgen`` (its torchrun child runs ``sketchgen train`` through
``sketchgen.cli``); nothing imports it.
"""
