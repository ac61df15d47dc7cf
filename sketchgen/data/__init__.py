"""Quick, Draw! data: where it comes from and what it becomes.

Owns: (from the top down) ``datasets`` (loading drawings and bitmaps as labelled datasets, the
bitmap render cache, the train / valid / test split), ``sources`` (Google's category list,
the bucket and mirror addresses, resolving a category or a data file to a local file, the
rule that names a source's class), ``cache`` (the cache folder, its checksummed
``MANIFEST.json``, its locks), ``download`` (moving a URL's bytes over HTTP: ranges, resumes,
retries, limits) and ``heads`` (how much of a file a record limit asks for).
May import: ``rasterize`` and the base modules (``sketchgen.errors``, ``config``, ``runtime``,
``checkpoints``, ``outputs``, ``figures``). No torch.
"""
