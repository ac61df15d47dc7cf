"""The Sketch Transformer as a task of the shared training harness
(``sketchgen.models.task.StrokeTask``): :class:`SketchTransformerTask` and the registry's factory
:func:`build_sketch_transformer_task`.

The task is Sketch-RNN's (``sketch_rnn.task.SketchRNNTask``) with the network swapped, so
everything but the decoder is the same code: the data (``SketchData``: stroke-3 sketches split
by the run's seed, long ones dropped, normalised by the training std), batches and their
augmentation, the loss (magenta's, ``sketch_rnn.loss.loss_terms``), the optimiser recipe
(Adam, magenta's learning-rate decay, gradients clipped elementwise), validation costs, the
log keys, sampling (``sketch_rnn.sampling.sample_strokes5`` with the decoder's key/value
cache), the checkpointed state, torchrun and, in vae mode, the reconstruction and
interpolation figures. Everything random in training comes from the task's generator except
dropout, which draws from torch's global generator (checkpointed by the harness, so a resumed
run continues bit for bit on CPU).
"""

from __future__ import annotations

from sketchgen.models.sketch_rnn.task import SketchRNNTask
from sketchgen.models.sketch_transformer.model import SketchTransformer
from sketchgen.models.task import TaskInputs


class SketchTransformerTask(SketchRNNTask):
    """Trains one Sketch Transformer (see ``SketchRNNTask`` for all it does)."""

    network = SketchTransformer


def build_sketch_transformer_task(inputs: TaskInputs) -> SketchTransformerTask:
    """The registry factory of the ``sketch-transformer`` entry."""
    return SketchTransformerTask(inputs)
