"""The Sketch-RNN family (Ha & Eck 2018, "A Neural Representation of Sketch Drawings") in
torch, as magenta's ``sketch_rnn`` lays it out: settings, cells, model, cost, batches and
sampling in separate modules, and the task the training harness drives.

Follows magenta's ``sketch_rnn`` (model.py, utils.py, rnn.py) wherever it is specified; each
module's docstring lists the places where we differ, each with its reason. Sequence
conventions (stroke-3, stroke-5, the start token, end rows AFTER the last point,
normalisation by the training std) are those of :mod:`rasterize.strokes`. Three modes
(``SketchRNNConfig.mode``): ``vae`` (encoder and decoder), ``unconditional`` (decoder
only) and ``class`` (decoder conditioned on a learned category embedding).

Owns: ``config`` (:class:`~.config.SketchRNNConfig`, the registry's ``SKETCH_RNN``, the
learning-rate and KL-weight schedules), ``cells`` (the LSTM cells), ``model`` (encoder,
decoder, :class:`~.model.SketchRNN`), ``loss`` (magenta's training cost), ``batches``
(padding, augmentation, random training batches), ``sampling`` (sketches from the model,
reconstructions, interpolations, drawings) and ``task`` (:class:`~.task.SketchRNNTask`,
the registry's factory ``build_sketch_rnn_task``). No file I/O and no printing: the task
returns its figures as images (``SketchRNNTask.figures``) for the harness to write.
May import: ``rasterize``, the base modules, ``sketchgen.data`` and ``sketchgen.models.task``;
not ``sketchgen.training`` (the harness imports this family, through the registry).
"""
