"""The bitmap GAN family: DCGAN, conditional GAN, the reference projects' setups as presets,
and our default SNGAN.

Every model is one ``GanConfig`` (a registry entry in ``sketchgen.models.registry``) trained
by one ``GanTask``; a preset differs from another only in its config.

Owns: ``config`` (GanConfig, its choices, the presets and their sources), ``nets`` (the
Generator/Discriminator pieces, one builder per architecture, the sizes each makes: pure torch
modules), ``standing`` (standing batch-norm statistics for sampling), ``task`` (GanTask, the
training step, and ``build_gan_task``, the registry's factory).
May import: torch, the base modules and ``sketchgen.models.task`` (the task protocol); not
``sketchgen.training``: the harness drives a task through the protocol, never the reverse.
"""
