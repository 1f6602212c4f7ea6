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
    noise: float = 0.0  # std of Gaussian pixel noise, as a fraction of full scale
    blur: float = 0.0  # probability of a 3×3 Gaussian blur

    @property
    def photometric(self) -> bool:
        return any((self.brightness, self.contrast, self.colour, self.noise, self.blur))


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
    if cfg.blur:
        kernel = torch.tensor([1.0, 2.0, 1.0])
        kernel = (kernel[:, None] * kernel[None, :] / 16.0).expand(3, 1, 3, 3)
        blurred = F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
        chosen = (torch.rand(n, 1, 1, 1, generator=generator) < cfg.blur).float()
        x = chosen * blurred + (1.0 - chosen) * x
    if cfg.noise:
        x = x + cfg.noise * torch.randn(x.shape, generator=generator)
    x = x.clamp_(0.0, 1.0).mul_(255.0).round_()
    return x.to(torch.uint8).permute(0, 2, 3, 1).reshape(b, v, s, s, 3)


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
