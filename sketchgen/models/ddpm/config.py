"""The diffusion model's settings: :class:`DdpmConfig`, the choices its fields allow, the sizes
its U-Net makes, and the registry's default ``DDPM``.

Defaults follow Ho et al. (2020) for the process and the training recipe, Nichol & Dhariwal
(2021) for the schedule, Ho & Salimans (2022) for classifier-free guidance and Song et al.
(2021) for the sampler, unless a comment says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

from sketchgen import runtime
from sketchgen.config import RATES, WIDTHS, check_fields, check_model_size, setting
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.ddpm.unet import UNet
from sketchgen.models.task import RunSettings

SAMPLERS = ("ddim", "ancestral")
MAX_LEVELS = 8  # resolutions of the U-Net: 7 halvings take 1,024 px (SIZES' largest) to 8
STEP_COUNTS = (1, 100_000)  # diffusion steps T, and sampling steps (Ho et al.: T = 1,000)


@dataclass(frozen=True)
class DdpmConfig:
    """A denoising diffusion model of one-channel bitmaps in [-1, 1], predicting the noise ε.

    The batch size, seed and step count come from the run's ``TrainConfig`` (Ho et al. train
    with batches of 128).
    """

    # base channel count: half of Ho et al.'s 128 for CIFAR-10's 3 x 32 x 32 colour images, for
    # one-channel drawings (6.5M weights at 28 px: a GPU model; the CPU budget takes 16, 0.41M)
    width: int = setting(64, within=WIDTHS)
    # channels of each level as multiples of width; the image halves between levels, so 3
    # levels run 28 -> 14 -> 7 px (Ho et al. at 32 px: 1, 2, 2, 2)
    channel_mults: tuple[int, ...] = setting((1, 2, 2), within=(1, 64), max_items=MAX_LEVELS)
    res_blocks: int = setting(2, within=(1, 16))  # residual blocks per level (Ho et al.)
    # in each residual block. Ho et al.'s 0.1 fought overfitting CIFAR-10's 50k images over
    # ~2,000 epochs; a comparison sees each drawing far fewer times (cpu-small: 2.4 epochs,
    # gpu-paper: 64), so it is off; 0.1 for long runs on few drawings
    dropout: float = setting(0.0, within="[0, 1)")
    timesteps: int = setting(1000, within=STEP_COUNTS)  # T, the diffusion's steps (Ho et al.)
    # true: one class-conditional model of every category (a label embedding, classifier-free
    # guidance), so one run covers a comparison; false: one model per category, as dcgan.
    # A run of a single category is unconditional either way (no label embedding).
    conditional: bool = True
    # p_uncond: share of training labels replaced by "no label", which trains the
    # unconditional ε that guidance needs (Ho & Salimans: 0.1 or 0.2 did best)
    label_dropout: float = setting(0.1, within="[0, 1)")
    # s in ε(∅) + s (ε(y) - ε(∅)): 1 = the conditional model, 0 = the unconditional one, more
    # trades diversity for fidelity at twice the sampling cost. 2: between Ho & Salimans's
    # best-FID scales (s = 1.1 to 1.3) and GLIDE's 3; a 300-step CPU run on eye and mouth
    # scored a mean FID of 11.5, 7.4 and 5.3 at s = 1, 2 and 3 (its eyes gained, its mouths
    # lost: an undertrained model leans on guidance)
    guidance_scale: float = setting(2.0, within="[0, 100]")
    lr: float = setting(2e-4, within=RATES)  # Adam's rate (Ho et al., CIFAR-10)
    grad_clip: float = setting(1.0, within="(0, 1_000]")  # global gradient-norm clip (Ho et al.)
    # EMA of the weights, used for sampling (Ho et al.), warmed up (models.task.update_ema)
    ema_decay: float = setting(0.9999, within="[0, 1)")
    # "ddim": sample_steps DDIM steps; "ancestral": DDPM's sampler over all timesteps
    sampler: str = setting("ddim", choices=SAMPLERS)
    # DDIM steps: Song et al.'s CIFAR-10 FID is 4.67 at 50 steps against 4.04 at 1,000, at a
    # twentieth of the cost, which keeps sampling a comparison's N drawings feasible on a CPU
    sample_steps: int = setting(50, within=STEP_COUNTS)
    # DDIM's η: 0 is deterministic given x_T (their best FID at few steps), 1 is DDPM-like
    eta: float = setting(0.0, within="[0, 1]")

    def __post_init__(self) -> None:
        check_fields(self)
        object.__setattr__(self, "channel_mults", tuple(self.channel_mults))
        if not self.channel_mults:
            raise FieldError("channel_mults", "must list at least one level, e.g. [1, 2, 2]")
        if self.sample_steps > self.timesteps:
            raise FieldError("sample_steps", f"must be at most timesteps ({self.timesteps}), "
                                             f"got {self.sample_steps}")

    @property
    def halvings(self) -> int:
        """How often the U-Net halves the image: sizes must be multiples of 2 ** halvings."""
        return len(self.channel_mults) - 1

    def unet(self, num_classes: int) -> UNet:
        """The noise-prediction net for a run of ``num_classes`` classes (unconditional, i.e.
        without a label embedding, for one class or ``conditional`` false)."""
        embedded = num_classes if self.conditional and num_classes > 1 else 0
        return UNet(self.width, self.channel_mults, self.res_blocks, self.dropout, embedded)

    def check(self, config: RunSettings) -> None:
        """Fail before any work if the U-Net cannot halve ``config.size`` often enough."""
        factor = 2**self.halvings
        if config.size % factor:
            raise ConfigError(f"size: model {config.model!r} cannot make {config.size} px "
                              f"images; its U-Net halves them {self.halvings} times "
                              f"(channel_mults {list(self.channel_mults)}), so size must be a "
                              f"multiple of {factor}")
        runtime.check_shards(config.batch_size, f"batch_size {config.batch_size}")
        check_model_size(lambda: [self.unet(max(1, len(config.categories)))],
                         f"model {config.model!r}")


DDPM = DdpmConfig()
