"""Sketch-RNN's settings: :class:`SketchRNNConfig` (every hyperparameter, documented where it is
defined), the choices its fields allow, the registry's default ``SKETCH_RNN``, and the two
schedules magenta anneals during training.

Optimisation
    Adam; ``lr = (lr0 - lr_min) * decay^step + lr_min``; gradients clipped elementwise to
    ``+-grad_clip`` (magenta's ``clip_by_value``, not a norm clip). ``step`` counts from 0
    as magenta's ``global_step`` (the harness's step 1 uses ``w_start`` and ``lr0``). The KL
    weight anneals as ``w = w_max - (w_max - w_start) * r^step`` (see :mod:`.loss`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sketchgen.config import MAX_STEPS, RATES, UNITS, check_fields, check_model_size, setting
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.sketch_rnn.model import SketchRNN
from sketchgen.models.sketch_rnn.sampling import PAPER_RULE, SIGMA_SCALES
from sketchgen.models.task import RunSettings
from sketchgen.runtime import check_shards

MODES = ("vae", "unconditional", "class")
CELLS = ("lstm", "layer_norm")
SEQUENCE_LENGTHS = (1, 10_000)  # points per sketch (magenta: 250; Google's raw drawings: more)
KL = "[0, 100]"  # KL weights and tolerance (magenta: 0.01 to 0.5, tolerance 0.2)


@dataclass(frozen=True)
class SketchRNNConfig:
    """Sketch-RNN's own settings; defaults are magenta's unless a comment says otherwise.

    The batch size, seed and step count come from the run's ``TrainConfig`` (magenta trains
    with batches of 100: ``batch_size=100``).
    """

    mode: str = setting("vae", choices=MODES)  # see the package doc
    enc_rnn_size: int = setting(256, within=UNITS)  # encoder LSTM units per direction
    dec_rnn_size: int = setting(512, within=UNITS)  # decoder LSTM units
    z_size: int = setting(128, within=UNITS)  # latent size (paper: 32, 64 or 128 recommended)
    # class mode: the category vector in z's place; = z_size
    class_embedding_size: int = setting(128, within=UNITS)
    num_mixture: int = setting(20, within=(1, 100))  # bivariate Gaussians in the offset mixture
    # magenta also has "hyper": not here
    enc_model: str = setting("lstm", choices=CELLS)
    dec_model: str = setting("lstm", choices=CELLS)
    # magenta's default is True; off here so the default cell is the fused nn.LSTM. Turning it
    # on runs the per-step StepLSTM, with or without layer norm.
    use_recurrent_dropout: bool = False
    # keep probability of the candidate-update dropout
    recurrent_dropout_keep: float = setting(0.90, within=RATES)
    # longer sketches are dropped (counted in the task's summary, kept in checkpoint)
    max_seq_len: int = setting(250, within=SEQUENCE_LENGTHS)
    # x and y scaled by independent U(1 - f, 1 + f)
    random_scale_factor: float = setting(0.15, within="[0, 1)")
    # probability of dropping an interior point
    augment_stroke_prob: float = setting(0.10, within="[0, 1)")
    learning_rate: float = setting(1e-3, within=RATES)  # Adam's starting rate
    # learning-rate decay per step, towards min_learning_rate
    decay_rate: float = setting(0.9999, within=RATES)
    min_learning_rate: float = setting(1e-5, within=RATES)  # floor of the decayed rate
    grad_clip: float = setting(1.0, within="(0, 1_000]")  # each gradient element to +-grad_clip
    kl_weight: float = setting(0.5, within=KL)  # w_max, the KL weight annealing converges to
    kl_weight_start: float = setting(0.01, within=KL)  # w_start, the KL weight at step 0
    # r in w = w_max - (w_max - w_start) * r^step
    kl_decay_rate: float = setting(0.99995, within=RATES)
    kl_tolerance: float = setting(0.2, within=KL)  # KL below this is not penalised (free bits)
    # shares of the data held out for validation and testing (seeded split; never trained on);
    # Google's .npz files keep their own train / valid / test instead
    valid_fraction: float = setting(0.05, within="[0, 1)")
    test_fraction: float = setting(0.05, within="[0, 1)")
    # steps between validation costs in the log; 0 = never
    eval_every: int = setting(500, within=(0, MAX_STEPS))
    sample_temperature: float = setting(1.0, within="(0, 100]")  # of `sample`, `sample_drawings`
    # how the temperature T scales each Gaussian's sigmas when sampling (sampling's module
    # doc): "paper" by sqrt(T) (Ha & Eck: covariance * T); "magenta" by T, as magenta's code
    temperature_rule: str = setting(PAPER_RULE, choices=tuple(SIGMA_SCALES))
    # cap on points per sampled sketch; a capped sketch is ended
    sample_max_len: int = setting(250, within=SEQUENCE_LENGTHS)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError for settings the model cannot run with."""
        check_fields(self)
        if self.valid_fraction + self.test_fraction >= 1:
            raise FieldError("test_fraction", "and valid_fraction must leave training data, "
                                              f"got {self.test_fraction} and {self.valid_fraction}")

    @property
    def conditional(self) -> bool:
        """Samples by class label (the registry's attribute)."""
        return self.mode == "class"

    def check(self, settings: RunSettings) -> None:
        """The registry's hook: this config against the run's settings."""
        self.validate()
        if self.mode == "class" and len(settings.categories) < 1:
            raise ConfigError("sketch-rnn: mode=class needs at least one category")
        check_shards(settings.batch_size, f"sketch-rnn: batch_size {settings.batch_size}")
        check_model_size(lambda: [SketchRNN(self, max(1, len(settings.categories)))],
                         f"model {settings.model!r}")

    def cell_for(self, model: str) -> tuple[str, float]:
        """``("fused", 1.0)`` for nn.LSTM, else ``("step", keep)`` for ``cells.StepLSTM``."""
        keep = self.recurrent_dropout_keep if self.use_recurrent_dropout else 1.0
        if model == "lstm" and keep == 1.0:
            return "fused", 1.0
        return "step", keep


SKETCH_RNN = SketchRNNConfig()


def kl_weight_at(config: SketchRNNConfig, step: int) -> float:
    """``w_max - (w_max - w_start) * r^step``; step counts from 0."""
    return config.kl_weight - (config.kl_weight - config.kl_weight_start) * (
        config.kl_decay_rate**step
    )


def learning_rate_at(config: SketchRNNConfig, step: int) -> float:
    """``(lr0 - lr_min) * decay^step + lr_min``; step counts from 0."""
    return (config.learning_rate - config.min_learning_rate) * (
        config.decay_rate**step
    ) + config.min_learning_rate
