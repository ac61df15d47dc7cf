"""Denoising diffusion on bitmaps (Ho et al. 2020) with the now usual improvements: a cosine
noise schedule, EMA weights, DDIM sampling and classifier-free guidance.

Owns: ``config`` (:class:`~.config.DdpmConfig`, its size rule, the registry's ``DDPM``),
``unet`` (the noise-prediction U-Net: pure torch modules), ``diffusion`` (the schedule, forward
noising, guidance, the DDIM and ancestral samplers: pure functions) and ``task``
(:class:`~.task.DdpmTask`, the registry's factory ``build_ddpm_task``). No file I/O and no
printing.
May import: torch, the base modules and ``sketchgen.models.task`` (the task protocol); not
``sketchgen.training``: the harness drives a task through the protocol, never the reverse.
"""
