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
UPDATE_ORDERS = ("alternating", "simultaneous")
WIDTH_ARCHITECTURES = ("dcgan", "superdeep")  # the others have their sources' fixed channels
DEFAULT_WIDTH = 64  # DCGAN paper
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
    # base channel count of G, and of D unless d_width is set (dcgan and superdeep builders)
    width: int = setting(DEFAULT_WIDTH, within=WIDTHS)
    # D's base channel count where it differs from G's (superdeep's code: G 128, D 16);
    # None = width
    d_width: int | None = setting(None, within=WIDTHS)
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
    # "alternating": D steps, then G steps against the updated D (the PyTorch DCGAN recipe);
    # "simultaneous": both losses from one forward pass, then both step (the TF DCGAN
    # tutorial's train_step; needs d_update "joint")
    update_order: str = setting("alternating", choices=UPDATE_ORDERS)
    # batches of STANDING_BATCH noise draws that estimate G's batch-norm statistics before
    # sampling (see standing.with_standing_statistics; 8 x 128: per-channel means to ~3% of a
    # std); 0 = sample with training's running averages, as Keras's predict() would
    standing_batches: int = setting(8, within=(0, 1_000))

    def __post_init__(self) -> None:
        check_fields(self)
        if self.conditioning == "projection" and self.architecture != "dcgan":
            raise FieldError("conditioning", "'projection' needs architecture 'dcgan', got "
                                             f"{self.architecture!r}")
        if self.update_order == "simultaneous" and self.d_update != "joint":
            raise FieldError("update_order", "'simultaneous' needs d_update 'joint' (one D "
                                             f"pass on real and fake), got {self.d_update!r}")
        self._check_widths()
        for name in ("real_target", "fake_target"):
            low, high = getattr(self, name)
            if low > high:
                raise FieldError(name, f"must be (low, high) with low <= high, got {(low, high)}")
            object.__setattr__(self, name, (low, high))
        object.__setattr__(self, "betas", tuple(self.betas))

    def _check_widths(self) -> None:
        """A width the architecture would ignore is an error, not a silent no-op."""
        if self.architecture in WIDTH_ARCHITECTURES:
            return
        for name, ignored in (("d_width", self.d_width is not None),
                              ("width", self.width != DEFAULT_WIDTH)):
            if ignored:
                raise FieldError(name, f"applies to {' and '.join(WIDTH_ARCHITECTURES)} "
                                       f"only: architecture {self.architecture!r} has its "
                                       f"source's fixed channel counts, got "
                                       f"{getattr(self, name)}")

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    @property
    def widths(self) -> tuple[int, int]:
        """(G's, D's) base channel counts."""
        return self.width, self.width if self.d_width is None else self.d_width

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

# ref 000 and its public code (github.com/Marcus-Friis/aml-mini-project at a7f222b:
# src/models.py, train.py, whose settings for the final runs date from acfd413, 2023-05-09, the
# date of the write-up's cat figures): G = SuperDeepGenerator(ngf=128): 4 transposed convolutions
# 512-256-128-1 (4->8->14->28 px), batch norm + ReLU + dropout 0.2 on all but the last,
# sigmoid; D = SuperDeepConvDiscriminator(16): 4 convolutions 16-32-64-128 with batch norm +
# LeakyReLU(0.2), flatten, Linear(128, 100), LeakyReLU, Linear(100, 1), sigmoid; BCE; one D
# step on a real and a fake batch, then G against the updated D on the same fake batch (their
# loop; the write-up's "generates a new batch" is not what the code does); images in [0, 1].
# 28 px only: the 14 px padding trick fixes the size. Not in the preset (TrainConfig or the
# data): their batch 64 is TrainConfig's default; they trained 40 epochs of Google's whole cat
# file (~77k steps) from a shuffled DataLoader, where the harness draws batches at random.
SUPERDEEP = GanConfig(
    architecture="superdeep", output="sigmoid",
    width=128,  # their train.py: ngf = 128 (G's channels 4*128, 2*128, 128)
    d_width=16,  # their train.py: SuperDeepConvDiscriminator(16) (D's channels 16 ... 8*16)
    lr_g=5e-4, lr_d=5e-4,  # their train.py: lr = 0.0005 for both Adams
    betas=(0.9, 0.999),  # torch's Adam defaults, which they kept
    weight_decay=1e-4,  # their train.py: weight_decay = 1e-4 on both optimizers
    g_dropout=0.2,  # their train.py: dropout = 0.2
)

# ref 002, the TensorFlow DCGAN tutorial (tensorflow.org/tutorials/generative/dcgan): Dense
# 100 -> 7*7*256 (no bias), BN, LeakyReLU, reshape, ConvT 5x5 128 stride 1, 64 stride 2, 1
# stride 2 (tanh); D conv 5x5 stride 2 64, 128, each LeakyReLU + dropout 0.3, flatten, dense
# 1; images in [-1, 1]. Keras defaults kept: LeakyReLU slope 0.3, batch-norm momentum 0.99
# (0.01 in torch's convention), eps 1e-3. Not in the preset: the tutorial's batch of 256
# (TrainConfig's batch_size; ref 002 does not give its own).
TF_DCGAN = GanConfig(
    architecture="tf-dcgan",
    lr_g=1e-3, lr_d=1e-3,  # ref 002's slides: Adam 1e-3 (the tutorial itself uses 1e-4)
    betas=(0.9, 0.999),  # Keras Adam defaults, which the tutorial keeps
    adam_eps=1e-7,  # Keras Adam default
    # the tutorial's train_step: G(z) and one D pass on real and fake under two gradient tapes,
    # both losses from that pass, then both optimizers apply their gradients
    update_order="simultaneous",
)

# Jason Brownlee's Keras tutorial "How to Develop a Conditional GAN (cGAN) From Scratch"
# (machinelearningmastery.com, 2019; Fashion-MNIST). Ref 001 took its models from it ("co-opted
# from a helpful online cGAN tutorial [Bro20]"); ref 004 lists it among its references but
# gives no architecture; ref 003 starts from the same conditioning (its description is the
# tutorial's wording). The tutorial: label -> embedding(50) -> dense -> one extra 7x7 feature
# map in G and one extra 28x28 image channel in D; G dense 128*7*7 + LeakyReLU(0.2), ConvT
# 4x4/2 128, 128, conv 7x7 tanh; D conv 3x3/2 128, 128, LeakyReLU(0.2), flatten, dropout 0.4,
# dense 1 (sigmoid); BCE; Adam 2e-4, beta1 0.5 (GanConfig's defaults); batch 128 (TrainConfig's
# batch_size, not in the preset).
BROWNLEE_CGAN = GanConfig(
    architecture="brownlee", conditioning="concat",
    adam_eps=1e-7,  # Keras Adam default
    # the tutorial's loop: D trained on a real and a fake half batch separately (two updates
    # per step), then G on a full batch of fresh noise
    d_update="separate",
)

# ref 003: Brownlee's tutorial cGAN (above) with the write-up's changes: strided
# convolutions, larger kernels in the top layers, batch norm, LeakyReLU(0.02) (in the
# builder), soft labels and separate learning rates.
SMOOTH_CGAN = GanConfig(
    architecture="smooth", conditioning="concat",
    adam_eps=1e-7,  # Keras Adam default (the write-up's code is Keras)
    # ref 003's label smoothing: "positive labels ==> 1 to [0.7, 1.2], negative labels ==> 0
    # to [0.0, 0.3]"
    real_target=(0.7, 1.2), fake_target=(0.0, 0.3),
    # The write-up tunes separate rates but gives none; we slow D against G because the
    # references' common failure is a discriminator that overpowers the generator.
    lr_g=2e-4, lr_d=1e-4,
    # ref 003: "train the discriminator on real and fake images, separately (half batch
    # each)", as the tutorial does
    d_update="separate",
)

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
