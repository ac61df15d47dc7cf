"""The Sketch Transformer's settings: :class:`SketchTransformerConfig` (the decoder's own
fields, and every field it shares with Sketch-RNN declared as Sketch-RNN declares it), the
choices its fields allow and the registry's default ``SKETCH_TRANSFORMER``.

A shared field (the data path, the output head, the loss, the optimiser, sampling) takes
its default and allowed values from ``SketchRNNConfig``'s own declaration
(:func:`as_in_sketch_rnn`): one home for each, and a comparison of the two models differs
only in the decoder. The shared values are checked by Sketch-RNN's rules too
(:meth:`SketchTransformerConfig.sketch_rnn`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from sketchgen.config import UNITS, check_fields, check_model_size, setting
from sketchgen.errors import FieldError
from sketchgen.models.sketch_rnn.config import SketchRNNConfig
from sketchgen.models.sketch_transformer.model import SketchTransformer
from sketchgen.models.task import RunSettings
from sketchgen.runtime import check_shards

POSITIONS = ("learned", "sinusoidal")
LAYERS = (1, 64)  # blocks and heads: GPT-2's largest has 48 layers of 25 heads

_SKETCH_RNN_FIELDS = {spec.name: spec for spec in dataclasses.fields(SketchRNNConfig)}


def as_in_sketch_rnn(name: str, default: Any = dataclasses.MISSING) -> Any:
    """A field declared as ``SketchRNNConfig`` declares ``name``: its allowed values and, unless
    ``default`` is given, its default."""
    spec = _SKETCH_RNN_FIELDS[name]
    return dataclasses.field(default=spec.default if default is dataclasses.MISSING else default,
                             metadata=spec.metadata)


@dataclass(frozen=True)
class SketchTransformerConfig:
    """A causal Transformer decoder in Sketch-RNN's place. The decoder's defaults follow GPT-2
    (Radford et al. 2019) at a size near Sketch-RNN's; every other field is Sketch-RNN's.

    The batch size, seed and step count come from the run's ``TrainConfig``.
    """

    # the comparison's mode: one model draws every category (like cgan); a class token
    # starts each sketch. "unconditional": no token; "vae": Sketch-RNN's encoder gives it
    mode: str = as_in_sketch_rnn("mode", default="class")
    # 4 blocks of width 256: 3.2M weights, the order of Sketch-RNN's 2.1M at magenta's sizes
    n_layer: int = setting(4, within=LAYERS)
    n_head: int = setting(4, within=LAYERS)  # 64 dimensions per head, as GPT-2's
    d_model: int = setting(256, within=UNITS)  # the width of every position's vector
    # Vaswani et al.'s rate, on the embeddings and each block's branches (see blocks): 3M
    # weights can learn one category's training sketches by heart
    dropout: float = setting(0.1, within="[0, 1)")
    # "learned": GPT-2's position embeddings; "sinusoidal": Vaswani et al.'s fixed ones
    positions: str = setting("learned", choices=POSITIONS)
    # everything below is Sketch-RNN's, so that both models see the same sketches, predict
    # with the same head, are scored by the same likelihood and trained by the same recipe
    num_mixture: int = as_in_sketch_rnn("num_mixture")  # the head's bivariate Gaussians
    enc_rnn_size: int = as_in_sketch_rnn("enc_rnn_size")  # vae mode: Sketch-RNN's encoder
    z_size: int = as_in_sketch_rnn("z_size")  # vae mode: the latent, mapped to the first token
    max_seq_len: int = as_in_sketch_rnn("max_seq_len")
    random_scale_factor: float = as_in_sketch_rnn("random_scale_factor")
    augment_stroke_prob: float = as_in_sketch_rnn("augment_stroke_prob")
    # Adam without warm-up: pre-norm blocks train without it (Xiong et al. 2020), and a
    # schedule that ignores the step count lets a resumed run go on for more steps
    learning_rate: float = as_in_sketch_rnn("learning_rate")
    decay_rate: float = as_in_sketch_rnn("decay_rate")
    min_learning_rate: float = as_in_sketch_rnn("min_learning_rate")
    grad_clip: float = as_in_sketch_rnn("grad_clip")
    kl_weight: float = as_in_sketch_rnn("kl_weight")
    kl_weight_start: float = as_in_sketch_rnn("kl_weight_start")
    kl_decay_rate: float = as_in_sketch_rnn("kl_decay_rate")
    kl_tolerance: float = as_in_sketch_rnn("kl_tolerance")
    valid_fraction: float = as_in_sketch_rnn("valid_fraction")
    test_fraction: float = as_in_sketch_rnn("test_fraction")
    eval_every: int = as_in_sketch_rnn("eval_every")
    sample_temperature: float = as_in_sketch_rnn("sample_temperature")
    temperature_rule: str = as_in_sketch_rnn("temperature_rule")
    sample_max_len: int = as_in_sketch_rnn("sample_max_len")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for settings the model cannot run with."""
        check_fields(self)
        if self.d_model % self.n_head:
            raise FieldError("d_model", f"must be a multiple of n_head={self.n_head}, "
                                        f"got {self.d_model}")
        self.sketch_rnn()

    def sketch_rnn(self) -> SketchRNNConfig:
        """The fields shared with Sketch-RNN as a ``SketchRNNConfig`` (checked by its rules):
        what Sketch-RNN's encoder is built from in vae mode."""
        return SketchRNNConfig(**{name: getattr(self, name) for name in SHARED})

    @property
    def conditional(self) -> bool:
        """Samples by class label (the registry's attribute)."""
        return self.mode == "class"

    @property
    def context(self) -> int:
        """Positions the decoder reads at most: the first token, then the start token and the
        points of the longest training sketch (its last row is only a target) or of the
        longest sample."""
        return 1 + max(self.max_seq_len + 1, self.sample_max_len)

    def check(self, settings: RunSettings) -> None:
        """The registry's hook: this config against the run's settings."""
        self.validate()
        check_shards(settings.batch_size, f"{settings.model}: batch_size {settings.batch_size}")
        check_model_size(lambda: [SketchTransformer(self, max(1, len(settings.categories)))],
                         f"model {settings.model!r}")


SHARED = tuple(spec.name for spec in dataclasses.fields(SketchTransformerConfig)
               if spec.name in _SKETCH_RNN_FIELDS)

SKETCH_TRANSFORMER = SketchTransformerConfig()
