"""Image augmentations for reward-model training: what a real camera changes, drawn per image.

A reward model trained on renders that all look alike fails on a camera that sees other colours, light or
noise, or sits a few millimetres away. Each image of a batch gets its own random translation, brightness,
contrast, colour cast, Gaussian noise and (sometimes) blur. Written as batched tensor arithmetic: one call
per batch, where torchvision's transforms draw one set of parameters per call (a Python loop per image).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F


@dataclass
class AugmentConfig:
    shift: int = 4  # px: random translation, edge-padded
    brightness: float = 0.0  # ± fraction: pixel values scaled by 1 ± this
    contrast: float = 0.0  # ± fraction: distance from the image mean scaled by 1 ± this
    colour: float = 0.0  # ± fraction: per-channel gains (a colour cast, another white balance)
    hue: float = 0.0  # ± fraction of the colour wheel: every colour's hue turned about the grey axis
    saturation: float = 0.0  # ± fraction: distance from each pixel's grey scaled by 1 ± this
    noise: float = 0.0  # std of Gaussian pixel noise, as a fraction of full scale
    randconv: float = 0.0  # probability of a random 3×3 convolution mixed in (RandConv: new colours and textures)
    blur: float = 0.0  # probability of a 3×3 Gaussian blur

    @property
    def photometric(self) -> bool:
        return any((self.brightness, self.contrast, self.colour, self.hue, self.saturation, self.noise, self.blur,
                    self.randconv))


def augment(frames: torch.Tensor, cfg: AugmentConfig, generator: torch.Generator) -> torch.Tensor:
    """uint8 (B, V, S, S, 3) → the same shape, every image changed by its own draw."""
    frames = shift(frames, cfg.shift, generator)
    if not cfg.photometric:
        return frames
    b, v, s = frames.shape[:3]
    x = frames.flatten(0, 1).permute(0, 3, 1, 2).float().div_(255.0)  # (N, 3, S, S)
    n = x.shape[0]

    def uniform(spread: float, *shape: int) -> torch.Tensor:
        return 1.0 + spread * (2.0 * torch.rand(n, *shape, generator=generator) - 1.0)

    if cfg.brightness:
        x = x * uniform(cfg.brightness, 1, 1, 1)
    if cfg.contrast:
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = mean + (x - mean) * uniform(cfg.contrast, 1, 1, 1)
    if cfg.colour:
        x = x * uniform(cfg.colour, 3, 1, 1)
    if cfg.hue or cfg.saturation:
        mix = colour_matrices(uniform(cfg.hue) - 1.0, uniform(cfg.saturation))
        x = torch.einsum("nij,njhw->nihw", mix, x)
    if cfg.blur:
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16.0).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        chosen = (torch.rand(n, 1, 1, 1, generator=generator) < cfg.blur).float()
        x = chosen * blurred + (1.0 - chosen) * x
    if cfg.randconv:
        x = random_convolution(x, cfg.randconv, generator)
    if cfg.noise:
        x = x + cfg.noise * torch.randn(x.shape, generator=generator)
    x = x.clamp_(0.0, 1.0).mul_(255.0).round_()
    return x.to(torch.uint8).permute(0, 2, 3, 1).reshape(b, v, s, s, 3)


def colour_matrices(turns: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) RGB maps: a hue rotation by ``turns`` (n,) of a full turn about the grey axis (Rodrigues'
    formula; greys stay grey, each pixel's channel sum is kept) after scaling each pixel's distance from its
    grey by ``scale`` (n,), the saturation. Both are linear in RGB, so one 3×3 product per pixel does both."""
    axis = torch.full((3,), 3.0**-0.5)
    cross = torch.tensor([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    angle = 2.0 * torch.pi * turns
    cos, sin = angle.cos()[:, None, None], angle.sin()[:, None, None]
    rotate = cos * torch.eye(3) + sin * cross + (1.0 - cos) * torch.outer(axis, axis)
    grey = torch.full((3, 3), 1.0 / 3.0)
    return rotate @ (scale[:, None, None] * (torch.eye(3) - grey) + grey)


def random_convolution(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """RandConv (Xu et al., ICLR 2021): with probability ``p`` an image (N, 3, S, S) in [0, 1] is blended,
    by a weight U(0, 1), with itself passed through a random 3×3 conv (3 → 3 channels, He-scaled Gaussian
    weights), rescaled to the image's mean and spread. Unlike a global colour map, it recolours each surface by
    its own colour and texture, so the model cannot lean on any one object's colour."""
    n = x.shape[0]
    weight = torch.randn(n * 3, 3, 3, 3, generator=generator) * (2.0 / 27.0) ** 0.5
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    mixed = F.conv2d(padded.reshape(1, n * 3, *padded.shape[2:]), weight, groups=n).reshape_as(x)
    dims = (1, 2, 3)
    mixed = (mixed - mixed.mean(dims, keepdim=True)) / mixed.std(dims, keepdim=True).clamp_min(1e-6)
    mixed = mixed * x.std(dims, keepdim=True) + x.mean(dims, keepdim=True)
    alpha = torch.rand(n, 1, 1, 1, generator=generator)
    chosen = (torch.rand(n, 1, 1, 1, generator=generator) < p).float()
    return x + chosen * (1.0 - alpha) * (mixed - x)


def shift(frames: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translations of up to ``max_shift`` px per image (edge-padded): (B, V, S, S, 3) uint8."""
    if max_shift == 0:
        return frames
    b, v, s = frames.shape[:3]
    images = frames.flatten(0, 1).permute(0, 3, 1, 2)
    padded = F.pad(images.float(), (max_shift,) * 4, mode="replicate")
    dx, dy = torch.randint(0, 2 * max_shift + 1, (2, b * v), generator=generator)
    rows = (dy[:, None] + torch.arange(s))[:, None, :, None].expand(-1, 3, -1, s + 2 * max_shift)
    cropped = padded.gather(2, rows)
    cols = (dx[:, None] + torch.arange(s))[:, None, None, :].expand(-1, 3, s, -1)
    cropped = cropped.gather(3, cols)
    return cropped.to(torch.uint8).permute(0, 2, 3, 1).reshape(b, v, s, s, 3)
