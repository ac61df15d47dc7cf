"""The GAN networks: the shared Generator/Discriminator pieces, one builder per architecture
(``BUILDERS``: (config, size, num_classes) -> (G, D)) and the image sizes each supports.

Pure torch modules: nothing here reads or writes a file or knows about training; building
draws only the initial weights, from torch's global generator (the harness seeds it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from sketchgen.models.gan.config import GanConfig


# --- the image sizes each architecture makes -----------------------------------------------

SIZE_RULES = {
    "dcgan": "b * 2**k px with 4 <= b <= 7 and k >= 2 (16, 20, 24, 28, 32, 48, 56, 64, 128, ...)",
    "superdeep": "28 px only",
    "tf-dcgan": "multiples of 4 from 8 px (28, 32, 64, ...)",
    "brownlee": "multiples of 4 from 8 px (28, 32, 64, ...)",
    "smooth": "multiples of 4 from 8 px (28, 32, 64, ...)",
}


def dcgan_levels(size: int) -> tuple[int, int] | None:
    """(base, upsamplings) with size == base * 2**upsamplings, 4 <= base <= 7, >= 2 upsamplings."""
    upsamplings = 0
    while size % 2 == 0 and size > 7:
        size //= 2
        upsamplings += 1
    return (size, upsamplings) if 4 <= size <= 7 and upsamplings >= 2 else None


def size_supported(architecture: str, size: int) -> bool:
    if architecture == "dcgan":
        return dcgan_levels(size) is not None
    if architecture == "superdeep":
        return size == 28
    return size % 4 == 0 and size >= 8


# --- building blocks -----------------------------------------------------------------------


class LabelMap(nn.Module):
    """Label -> embedding -> dense -> one (side x side) map (Brownlee's conditioning)."""

    def __init__(self, num_classes: int, embed_dim: int, side: int) -> None:
        super().__init__()
        self.side = side
        self.embed = nn.Embedding(num_classes, embed_dim)
        self.dense = nn.Linear(embed_dim, side * side)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        return self.dense(self.embed(labels)).view(-1, 1, self.side, self.side)


class Generator(nn.Module):
    """``stem`` turns (z, labels) into a feature map, ``body`` into one image channel."""

    def __init__(self, stem: nn.Module, body: nn.Sequential, output: str) -> None:
        super().__init__()
        self.stem = stem
        self.body = body
        self.output = output

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        image = self.body(self.stem(z, labels))
        return torch.tanh(image) if self.output == "tanh" else torch.sigmoid(image)


class ConvStem(nn.Module):
    """z (+ label embedding) as a 1x1 map -> transposed conv to ``side`` x ``side`` (DCGAN)."""

    def __init__(self, in_dim: int, channels: int, side: int, num_classes: int,
                 embed_dim: int, post: nn.Module) -> None:
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        full_dim = in_dim + (embed_dim if num_classes else 0)
        self.conv = nn.ConvTranspose2d(full_dim, channels, side, 1, 0, bias=False)
        self.post = post

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], dim=1)
        return self.post(self.conv(z[:, :, None, None]))


class DenseStem(nn.Module):
    """z -> dense -> (channels, side, side) (+ one label map as an extra feature map)."""

    def __init__(self, in_dim: int, channels: int, side: int, post: nn.Module,
                 label_map: LabelMap | None, bias: bool = True) -> None:
        super().__init__()
        self.channels, self.side = channels, side
        self.dense = nn.Linear(in_dim, channels * side * side, bias=bias)
        self.post = post
        self.label_map = label_map

    def forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = self.post(self.dense(z)).view(-1, self.channels, self.side, self.side)
        if self.label_map is not None:
            features = torch.cat([features, self.label_map(labels)], dim=1)
        return features


class Discriminator(nn.Module):
    """``body`` maps an image (+ label channel) to a flat feature vector, ``head`` to a logit;
    a projection discriminator adds <embed(label), features>."""

    def __init__(self, body: nn.Sequential, head: nn.Module, label_map: LabelMap | None = None,
                 projection: nn.Embedding | None = None) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.label_map = label_map
        self.projection = projection

    def forward(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.label_map is not None:
            images = torch.cat([images, self.label_map(labels)], dim=1)
        features = self.body(images)
        logits = self.head(features).squeeze(1)
        if self.projection is not None:
            logits = logits + (self.projection(labels) * features).sum(dim=1)
        return logits


def _keras_bn(channels: int, dims: int = 2) -> nn.Module:
    """Batch norm with Keras defaults (momentum 0.99 = torch 0.01, eps 1e-3) for Keras presets."""
    return (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(channels, eps=1e-3, momentum=0.01)


# --- architectures: (config, size, num_classes) -> (G, D) ---------------------------------


def build_dcgan(cfg: GanConfig, size: int, num_classes: int) -> tuple[Generator, Discriminator]:
    """Radford et al.: transposed convs 4x4/2 halving channels, BN + ReLU, tanh; D mirrors G
    with LeakyReLU(0.2) and BN (left out under spectral norm, which replaces it)."""
    base, upsamplings = dcgan_levels(size)
    classes = num_classes if cfg.conditional else 0
    g_width, d_width = cfg.widths
    top = g_width * 2 ** (upsamplings - 1)

    def g_block(channels: int) -> list[nn.Module]:
        norm = [nn.BatchNorm2d(channels)] if cfg.g_batch_norm else []
        return [*norm, nn.ReLU(), *_dropout(cfg.g_dropout)]

    stem = ConvStem(cfg.latent_dim, top, base, classes, cfg.embed_dim, nn.Sequential(*g_block(top)))
    layers: list[nn.Module] = []
    channels = top
    for _ in range(upsamplings - 1):
        layers += [nn.ConvTranspose2d(channels, channels // 2, 4, 2, 1, bias=False),
                   *g_block(channels // 2)]
        channels //= 2
    layers.append(nn.ConvTranspose2d(channels, 1, 4, 2, 1))
    generator = Generator(stem, nn.Sequential(*layers), cfg.output)

    label_channel = cfg.conditioning == "concat"
    d_layers: list[nn.Module] = [nn.Conv2d(1 + label_channel, d_width, 4, 2, 1),
                                 nn.LeakyReLU(0.2)]
    channels = d_width
    for _ in range(upsamplings - 1):
        d_layers += [nn.Conv2d(channels, channels * 2, 4, 2, 1, bias=cfg.spectral_norm),
                     *([] if cfg.spectral_norm else [nn.BatchNorm2d(channels * 2)]),
                     nn.LeakyReLU(0.2)]
        channels *= 2
    d_layers.append(nn.Flatten())
    features = channels * base * base
    discriminator = Discriminator(
        nn.Sequential(*d_layers), nn.Linear(features, 1),
        LabelMap(num_classes, cfg.embed_dim, size) if label_channel else None,
        nn.Embedding(num_classes, features) if cfg.conditioning == "projection" else None,
    )
    return generator, discriminator


def _dropout(p: float) -> list[nn.Module]:
    return [nn.Dropout(p)] if p > 0 else []


def build_superdeep(cfg: GanConfig, size: int, num_classes: int
                    ) -> tuple[Generator, Discriminator]:
    """SuperDeepGenerator(ngf) / SuperDeepConvDiscriminator(ndf) (ref 000): 4->8->14->28 px."""
    ngf, ndf = cfg.widths
    drop = _dropout(cfg.g_dropout)
    stem = ConvStem(cfg.latent_dim, ngf * 4, 4, 0, 0,
                    nn.Sequential(nn.BatchNorm2d(ngf * 4), nn.ReLU(), *drop))
    body = nn.Sequential(
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 4, 2, 1, bias=False),
        nn.BatchNorm2d(ngf * 2), nn.ReLU(), *_dropout(cfg.g_dropout),
        nn.ConvTranspose2d(ngf * 2, ngf, 4, 2, 2, bias=False),  # 8 -> 14 px
        nn.BatchNorm2d(ngf), nn.ReLU(), *_dropout(cfg.g_dropout),
        nn.ConvTranspose2d(ngf, 1, 4, 2, 1, bias=False),
    )
    d_layers: list[nn.Module] = []
    channels = 1
    for out, kernel, stride, pad in ((ndf, 4, 2, 1), (ndf * 2, 4, 2, 1), (ndf * 4, 4, 2, 1),
                                     (ndf * 8, 3, 1, 0)):  # 28 -> 14 -> 7 -> 3 -> 1 px
        d_layers += [nn.Conv2d(channels, out, kernel, stride, pad, bias=False),
                     nn.BatchNorm2d(out), nn.LeakyReLU(0.2)]
        channels = out
    d_layers.append(nn.Flatten())
    head = nn.Sequential(nn.Linear(ndf * 8, 100), nn.LeakyReLU(0.2), nn.Linear(100, 1))
    return Generator(stem, body, cfg.output), Discriminator(nn.Sequential(*d_layers), head)


def build_tf_dcgan(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """The TensorFlow tutorial DCGAN (ref 002) at size = 4 * side (7 at 28 px)."""
    side = size // 4
    slope = 0.3  # Keras LeakyReLU default, which the tutorial uses
    stem = DenseStem(cfg.latent_dim, 256, side,
                     nn.Sequential(_keras_bn(256 * side * side, dims=1), nn.LeakyReLU(slope)),
                     None, bias=False)
    body = nn.Sequential(
        nn.ConvTranspose2d(256, 128, 5, 1, 2, bias=False), _keras_bn(128), nn.LeakyReLU(slope),
        nn.ConvTranspose2d(128, 64, 5, 2, 2, output_padding=1, bias=False), _keras_bn(64),
        nn.LeakyReLU(slope),
        nn.ConvTranspose2d(64, 1, 5, 2, 2, output_padding=1, bias=False),
    )
    d_body = nn.Sequential(
        nn.Conv2d(1, 64, 5, 2, 2), nn.LeakyReLU(slope), nn.Dropout(0.3),
        nn.Conv2d(64, 128, 5, 2, 2), nn.LeakyReLU(slope), nn.Dropout(0.3),
        nn.Flatten(),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(128 * side * side, 1)))


def build_brownlee(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """Brownlee's Keras cGAN tutorial (ref 001's models): the label map as an extra feature
    map in G and an extra image channel in D."""
    side = size // 4
    classes = num_classes if cfg.conditional else 0
    g_map = LabelMap(classes, cfg.embed_dim, side) if classes else None
    stem = DenseStem(cfg.latent_dim, 128, side, nn.LeakyReLU(0.2), g_map)
    body = nn.Sequential(
        nn.ConvTranspose2d(128 + bool(classes), 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.ConvTranspose2d(128, 128, 4, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 1, 7, 1, 3),
    )
    d_map = LabelMap(classes, cfg.embed_dim, size) if classes else None
    d_body = nn.Sequential(
        nn.Conv2d(1 + bool(classes), 128, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Conv2d(128, 128, 3, 2, 1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Dropout(0.4),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(128 * side * side, 1), d_map))


def build_smooth(cfg: GanConfig, size: int, num_classes: int
                 ) -> tuple[Generator, Discriminator]:
    """Ref 003's cGAN: Brownlee's conditioning, strided convs with large top kernels, batch
    norm, LeakyReLU(0.02)."""
    side = size // 4
    slope = 0.02  # ref 003: "best value is 0.02"
    classes = num_classes if cfg.conditional else 0
    g_map = LabelMap(classes, cfg.embed_dim, side) if classes else None
    stem = DenseStem(cfg.latent_dim, 256, side,
                     nn.Sequential(_keras_bn(256 * side * side, dims=1), nn.LeakyReLU(slope)),
                     g_map)
    body = nn.Sequential(
        nn.ConvTranspose2d(256 + bool(classes), 128, 4, 2, 1), _keras_bn(128),
        nn.LeakyReLU(slope),
        nn.ConvTranspose2d(128, 128, 4, 2, 1), _keras_bn(128), nn.LeakyReLU(slope),
        nn.Conv2d(128, 1, 7, 1, 3),  # large kernel at the top layer
    )
    d_map = LabelMap(classes, cfg.embed_dim, size) if classes else None
    d_body = nn.Sequential(
        nn.Conv2d(1 + bool(classes), 64, 5, 2, 2), nn.LeakyReLU(slope),  # large top kernel
        nn.Conv2d(64, 128, 5, 2, 2), _keras_bn(128), nn.LeakyReLU(slope),
        nn.Conv2d(128, 256, 3, 1, 1), _keras_bn(256), nn.LeakyReLU(slope),
        nn.Flatten(), nn.Dropout(0.4),
    )
    return (Generator(stem, body, cfg.output),
            Discriminator(d_body, nn.Linear(256 * side * side, 1), d_map))


BUILDERS = {
    "dcgan": build_dcgan,
    "superdeep": build_superdeep,
    "tf-dcgan": build_tf_dcgan,
    "brownlee": build_brownlee,
    "smooth": build_smooth,
}


def build_networks(cfg: GanConfig, size: int, num_classes: int
                   ) -> tuple[Generator, Discriminator]:
    """G and D for ``size`` px; spectral norm applied to every D layer if configured."""
    generator, discriminator = BUILDERS[cfg.architecture](cfg, size, num_classes)
    if cfg.spectral_norm:
        for module in list(discriminator.modules()):
            if isinstance(module, (nn.Conv2d, nn.Linear, nn.Embedding)):
                nn.utils.parametrizations.spectral_norm(module)
    return generator, discriminator
