"""The Sketch Transformer: Sketch-RNN (``sketchgen.models.sketch_rnn``) with its LSTM decoder
replaced by a causal Transformer decoder, so that a comparison of the two changes the
sequence architecture alone -- the same stroke-5 data path, output head (a bivariate Gaussian
mixture and pen softmax), likelihood, optimiser recipe and sampler, all imported from
``sketch_rnn``, not copied.

Owns: ``config`` (:class:`~.config.SketchTransformerConfig`, the registry's
``SKETCH_TRANSFORMER``), ``blocks`` (causal self-attention with a key/value cache, GPT-2's
pre-norm block, position embeddings, initialisation), ``model`` (the decoder with
Sketch-RNN's decoding interface, :class:`~.model.SketchTransformer`) and ``task``
(:class:`~.task.SketchTransformerTask`, the registry's factory
``build_sketch_transformer_task``). No file I/O and no printing.
May import: ``rasterize``, the base modules, ``sketchgen.data``, ``sketchgen.models.task`` and
``sketchgen.models.sketch_rnn``; not ``sketchgen.training``.
"""
