"""Quick, Draw! data: where it comes from and what it becomes.

Owns: the bucket and mirror addresses, downloads and the checksummed cache, Google's category
list, the rule that names a source's class, and loading drawings and bitmaps as labelled
datasets with their splits.
May import: ``rasterize`` and the base modules (``sketchgen.errors``, ``config``, ``runtime``,
``outputs``, ``figures``). No torch.
"""
