"""A GAN's settings: :class:`GanConfig`, the choices its fields allow, and the registry's
presets (DCGAN, cGAN, the reference projects' setups, our SNGAN default), each with its source.

A preset differs from another only in its config: the architecture builder, the
conditioning, the loss, label targets, optimizers and image scale. Sources are in
``../shared/reference/`` ("ref 000" = 000_d9519285d0731582.txt, etc.).
"""

from __future__ import annotations

from dataclasses import dataclass

from sketchgen import runtime
from sketchgen.config import RATES, UNITS, WIDTHS, check_fields, check_model_size, setting
from sketchgen.errors import ConfigError, FieldError
from sketchgen.models.gan.nets import SIZE_RULES, build_networks, size_supported
from sketchgen.models.task import RunSettings

ARCHITECTURES = ("dcgan", "superdeep", "tf-dcgan", "brownlee", "smooth")
CONDITIONINGS = ("none", "concat", "projection")
LOSSES = ("bce", "hinge")
OUTPUTS = ("tanh", "sigmoid")
D_UPDATES = ("joint", "separate")
TARGETS = "[-1, 2]"  # D's label targets: around 0 and 1 (smooth-cgan's real ones reach 1.2)


@dataclass(frozen=True)
class GanConfig:
    """A GAN's architecture and training recipe. Defaults are the DCGAN paper's."""

    # generator/discriminator builder
    architecture: str = setting("dcgan", choices=ARCHITECTURES)
    # "none"; "concat": label embedding joins z in G and an extra label channel in D;
    # "projection": label embedding joins z in G, projection discriminator (dcgan only)
    conditioning: str = setting("none", choices=CONDITIONINGS)
    latent_dim: int = setting(100, within=UNITS)  # the size every reference uses
    width: int = setting(64, within=WIDTHS)  # base channel count of the dcgan builder (paper: 64)
    embed_dim: int = setting(50, within=UNITS)  # label embedding size (Brownlee: 50)
    # "bce": non-saturating GAN loss; "hinge": SNGAN/SAGAN hinge loss
    loss: str = setting("bce", choices=LOSSES)
    # D's targets for real and fake images, drawn ~ U[lo, hi]; soft labels stay near 0 and 1
    real_target: tuple[float, float] = setting((1.0, 1.0), within=TARGETS)
    fake_target: tuple[float, float] = setting((0.0, 0.0), within=TARGETS)
    lr_g: float = setting(2e-4, within=RATES)  # DCGAN paper
    lr_d: float = setting(2e-4, within=RATES)  # DCGAN paper
    # DCGAN paper: beta1 0.5 steadies training
    betas: tuple[float, float] = setting((0.5, 0.999), within="[0, 1)")
    adam_eps: float = setting(1e-8, within=RATES)  # torch default (Keras: 1e-7)
    weight_decay: float = setting(0.0, within="[0, 1]")  # L2 on both nets; superdeep used 1e-5
    # dropout in G (superdeep: "to combat mode collapse")
    g_dropout: float = setting(0.0, within="[0, 1)")
    # batch norm in the dcgan builder's G (DCGAN paper); off gives a G whose output does not
    # depend on the batch, e.g. to check data-parallel runs on CPUs, which lack SyncBatchNorm
    g_batch_norm: bool = True
    spectral_norm: bool = False  # spectral norm on every D layer, replacing D's batch norm
    # EMA of G's weights used for sampling; 0 = sample G itself
    ema_decay: float = setting(0.0, within="[0, 1)")
    # "tanh": data scaled to [-1, 1]; "sigmoid": to [0, 1]
    output: str = setting("tanh", choices=OUTPUTS)
    # "joint": one D step on real+fake; "separate": half batches
    d_update: str = setting("joint", choices=D_UPDATES)
    # batches of STANDING_BATCH noise draws that estimate G's batch-norm statistics before
    # sampling (see standing.with_standing_statistics; 8 x 128: per-channel means to ~3% of a
    # std); 0 = sample with training's running averages, as Keras's predict() would
    standing_batches: int = setting(8, within=(0, 1_000))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.conditioning == "projection" and self.architecture != "dcgan":
            raise FieldError("conditioning", "'projection' needs architecture 'dcgan', got "
                                             f"{self.architecture!r}")
        for name in ("real_target", "fake_target"):
            low, high = getattr(self, name)
            if low > high:
                raise FieldError(name, f"must be (low, high) with low <= high, got {(low, high)}")
            object.__setattr__(self, name, (low, high))
        object.__setattr__(self, "betas", tuple(self.betas))

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    def check(self, config: RunSettings) -> None:
        """Fail before any work if the architecture cannot produce ``config.size`` images."""
        if not size_supported(self.architecture, config.size):
            raise ConfigError(f"model {config.model!r} cannot make {config.size} px images; "
                              f"it supports {SIZE_RULES[self.architecture]}")
        real_batch = config.batch_size // 2 if self.d_update == "separate" else config.batch_size
        if real_batch < 1:
            raise ConfigError(f"batch_size {config.batch_size} leaves no real images per D "
                              f"update ({self.d_update} update)")
        runtime.check_shards(real_batch, f"batch_size {config.batch_size} (a {self.d_update} "
                                         f"D update's {real_batch} real images)")
        check_model_size(lambda: build_networks(self, config.size, max(1, len(config.categories))),
                         f"model {config.model!r} at {config.size} px")


# --- the registry's presets -----------------------------------------------------------------

DCGAN = GanConfig()
CGAN = GanConfig(conditioning="concat")

# ref 000 and its public src/models.py/train.py: G = 4 transposed convolutions 256-128-64-1
# (4->8->14->28 px), batch norm + ReLU + dropout 0.2 on all but the last, sigmoid; D = 4
# convolutions 64-128-256-512 with batch norm + LeakyReLU(0.2), flatten, Linear(512, 100),
# LeakyReLU, Linear(100, 1), sigmoid; BCE; Adam 1e-3, weight decay 1e-5 (their train.py);
# images in [0, 1]. 28 px only: the 14 px padding trick fixes the size.
SUPERDEEP = GanConfig(architecture="superdeep", output="sigmoid", lr_g=1e-3, lr_d=1e-3,
                      betas=(0.9, 0.999), weight_decay=1e-5, g_dropout=0.2)

# ref 002, the TensorFlow DCGAN tutorial: Dense 100 -> 7*7*256 (no bias), BN, LeakyReLU,
# reshape, ConvT 5x5 128 stride 1, 64 stride 2, 1 stride 2 (tanh); D conv 5x5 stride 2 64,
# 128, each LeakyReLU + dropout 0.3, flatten, dense 1; Adam 1e-3 (ref 002; the tutorial itself
# uses 1e-4); images in [-1, 1]. Keras defaults kept: LeakyReLU slope 0.3, batch-norm momentum
# 0.99 (0.01 in torch's convention), eps 1e-3.
TF_DCGAN = GanConfig(architecture="tf-dcgan", lr_g=1e-3, lr_d=1e-3, betas=(0.9, 0.999),
                     adam_eps=1e-7)

# refs 001 and 004, Brownlee's "conditional GAN from scratch": label -> embedding(50) -> dense
# -> one extra 7x7 feature map in G and one extra 28x28 image channel in D; G dense 128*7*7 +
# LeakyReLU(0.2), ConvT 4x4/2 128, 128, conv 7x7 tanh; D conv 3x3/2 128, 128, LeakyReLU(0.2),
# flatten, dropout 0.4, dense 1 (sigmoid); BCE; Adam 2e-4, beta1 0.5; D trained on a real and
# a fake half batch separately (two updates per step).
BROWNLEE_CGAN = GanConfig(architecture="brownlee", conditioning="concat", adam_eps=1e-7,
                          d_update="separate")

# ref 003: Brownlee's conditioning with the write-up's changes: strided convolutions, larger
# kernels in the top layers, batch norm, LeakyReLU(0.02), soft labels (real ~ U[0.7, 1.2],
# fake ~ U[0, 0.3]) and separate learning rates. The write-up gives no rates; we slow D
# (1e-4) against G (2e-4) because the references' common failure is a discriminator that
# overpowers the generator.
SMOOTH_CGAN = GanConfig(architecture="smooth", conditioning="concat", adam_eps=1e-7,
                        real_target=(0.7, 1.2), fake_target=(0.0, 0.3), lr_g=2e-4, lr_d=1e-4,
                        d_update="separate")

# Our default: the DCGAN backbone with a spectrally normalised projection discriminator
# (Miyato et al. 2018; Miyato & Koyama 2018), hinge loss, one D step per G step with
# Adam(2e-4, betas 0.5/0.999) (one of the settings of Miyato et al.'s robustness study; on our
# short CPU runs it learned faster than SAGAN's 1e-4/4e-4 with betas 0/0.9), and an
# exponential moving average of G's weights for sampling.
# Why: every reference reports a discriminator that wins (D loss near 1e-14 in ref 001);
# spectral norm bounds D's Lipschitz constant and the hinge loss does not saturate, so G keeps
# getting gradients; projection is the conditioning that scales best with classes; EMA is a
# free quality gain at sampling time. One D update per G update keeps it cheap on a CPU.
SNGAN = GanConfig(conditioning="projection", loss="hinge", spectral_norm=True, ema_decay=0.999)
