"""Augmentations for reward-model training: seeded, per image, each knob changing what it names; and a
PRM trained with them holds up on a camera that sees other colours, light and noise (real training)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.models.augment import AugmentConfig, augment, colour_matrices
from robo_reward.models.metrics import voc
from robo_reward.models.prm_train import PRMTrainConfig, train_prm

PHOTOMETRIC = {"brightness": 0.3, "contrast": 0.3, "colour": 0.3, "noise": 0.05, "blur": 0.3}


def _frames() -> torch.Tensor:
    rng = np.random.default_rng(0)
    base = np.linspace(40, 200, 32, dtype=np.float32)[None, None, :, None, None]
    return torch.from_numpy((base + rng.integers(0, 30, (8, 2, 32, 32, 3))).clip(0, 255).astype(np.uint8))


def test_augment_is_seeded_per_image_and_each_knob_changes_what_it_names():
    frames = _frames()

    def run(seed: int, **knobs) -> torch.Tensor:
        return augment(frames, AugmentConfig(shift=0, **knobs), torch.Generator().manual_seed(seed))

    assert torch.equal(run(0), frames)  # nothing asked, nothing changed
    full = run(1, **PHOTOMETRIC)
    assert full.shape == frames.shape and full.dtype == torch.uint8
    assert torch.equal(full, run(1, **PHOTOMETRIC)) and not torch.equal(full, run(2, **PHOTOMETRIC))
    bright = run(3, brightness=0.5).float().mean(dim=(2, 3, 4)) / frames.float().mean(dim=(2, 3, 4))
    assert bright.std() > 0.05  # every image its own brightness
    cast = run(4, colour=0.5).float().mean(dim=(2, 3)) / frames.float().mean(dim=(2, 3))  # (B, V, 3)
    assert (cast.max(-1).values - cast.min(-1).values).mean() > 0.1  # channels scaled apart: a colour cast
    contrast = run(5, contrast=0.5).float().std(dim=(2, 3, 4)) / frames.float().std(dim=(2, 3, 4))
    assert contrast.std() > 0.05
    noisy = run(6, noise=0.1).float() - frames.float()
    assert 15 < noisy.std() < 35  # ≈ 0.1 of full scale
    blurred = run(7, blur=1.0).float()
    assert blurred.diff(dim=3).abs().mean() < frames.float().diff(dim=3).abs().mean() * 0.8
    red = torch.zeros(64, 1, 8, 8, 3, dtype=torch.uint8)
    red[..., 0] = 200
    turned = augment(red, AugmentConfig(shift=0, hue=0.5), torch.Generator().manual_seed(8)).float()
    dominant = turned.mean(dim=(1, 2, 3)).argmax(-1)  # (64,) which channel each image's red became
    assert set(dominant.tolist()) == {0, 1, 2}  # hue turned, so red became green or blue in some images
    greyish = augment(red, AugmentConfig(shift=0, saturation=0.9), torch.Generator().manual_seed(9)).float()
    spread = greyish[..., 0] - greyish[..., 1]  # red minus green: 200 at saturation 1, less when desaturated
    assert spread.amin() < 60 and spread.amax() >= 250  # scaled by U(0.1, 1.9), clipped to 0..255
    with pytest.raises(ValueError, match="unknown keys"):
        PRMTrainConfig(augment={"colour_jitter": 0.2})


def test_colour_matrices_turn_hues_about_grey_and_scale_saturation():
    """Greys map to themselves, each pixel's channel sum (its brightness) is kept, a third of a turn carries
    red to green to blue, and saturation 0 leaves only grey."""
    gen = torch.Generator().manual_seed(0)
    mix = colour_matrices(torch.rand(256, generator=gen) - 0.5, 2 * torch.rand(256, generator=gen))
    assert torch.allclose(mix @ torch.ones(3), torch.ones(256, 3), atol=1e-6)  # rows sum to 1: grey stays grey
    assert torch.allclose(torch.ones(3) @ mix, torch.ones(256, 3), atol=1e-6)  # any colour's channel sum kept
    third = colour_matrices(torch.tensor([1 / 3]), torch.ones(1))[0]
    assert torch.allclose(third, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), atol=1e-6)
    grey = colour_matrices(torch.zeros(1), torch.zeros(1))[0] @ torch.tensor([0.9, 0.3, 0.0])
    assert torch.allclose(grey, torch.full((3,), 0.4), atol=1e-6)


def test_random_convolution_recolours_each_surface_its_own_way():
    """RandConv keeps each image's mean level but maps two surfaces' colours in ways no global per-channel gain
    (a colour cast) can: fitted on one surface, a gain misses the other by far."""
    frames = torch.zeros(32, 1, 16, 16, 3, dtype=torch.uint8)
    frames[:, :, :, :8] = torch.tensor([200, 40, 40], dtype=torch.uint8)  # a red surface on the left...
    frames[:, :, :, 8:] = torch.tensor([40, 160, 60], dtype=torch.uint8)  # ...and a green one on the right
    out = augment(frames, AugmentConfig(shift=0, randconv=1.0), torch.Generator().manual_seed(0)).float()
    src = frames.float()
    again = augment(frames, AugmentConfig(shift=0, randconv=1.0), torch.Generator().manual_seed(0)).float()
    assert torch.equal(out, again)
    assert not torch.equal(out, src)
    assert (out.mean(dim=(1, 2, 3, 4)) - src.mean(dim=(1, 2, 3, 4))).abs().max() < 25  # level kept (up to clipping)
    inner = (slice(None), 0, slice(2, 14))
    left, right = out[inner][:, :, 2:6].mean(dim=(1, 2)), out[inner][:, :, 10:14].mean(dim=(1, 2))  # (32, 3)
    gain = left / src[0, 0, 0, 0]  # the per-channel gain that explains the red surface's new colour...
    miss = (gain * src[0, 0, 0, 15] - right).abs().amax(-1)  # ...applied to the green one
    assert (miss > 30).float().mean() > 0.5  # for most images it is far off: surfaces recoloured apart
    assert torch.equal(augment(frames, AugmentConfig(shift=0, randconv=0.0), torch.Generator()), frames)


def _shifted(frames: np.ndarray, seed: int) -> torch.Tensor:
    """Another camera's look: a warm colour cast, 20 % darker, pixel noise."""
    x = torch.from_numpy(frames).float() / 255
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))
    x = x * torch.tensor([1.25, 0.85, 0.8]) * 0.8 + 0.05 * noise
    return (x.clamp(0, 1) * 255).round().to(torch.uint8)


def test_a_prm_trained_with_augmentation_holds_up_on_a_shifted_camera(tmp_path):
    train, heldout = tmp_path / "train.h5", tmp_path / "heldout.h5"
    for path, count, seed in ((train, 24, 0), (heldout, 12, 7)):
        record(RecordConfig(task="reach", num_demos=count, out=path, cameras=("front", "wrist"), res=32,
                            failure_rate=0.2, seed=seed, progress_bar=False))  # fmt: skip
    net = {"cameras": ["front", "wrist"], "channels": [8, 16], "embed_dim": 32}
    scores = {}
    for name, knobs in (("shift only", {}), ("photometric", PHOTOMETRIC)):
        # a constant rate: at 300 steps a decaying one leaves the photometric model under-trained (measured: VOC
        # 0.25 against 0.47 shift only, where the constant rate gives 0.54-0.57); the schedule is not tested here
        cfg = PRMTrainConfig(steps=300, batch_size=64, pairs=16, augment=knobs, torch_threads=1, save_every=10**6,
                             lr_schedule="constant")  # fmt: skip
        model, _ = train_prm([train], tmp_path / name, net, cfg, False)
        with DemoReader(heldout) as reader:
            ok = [i for i in range(len(reader)) if reader.success(i)]
            scores[name] = np.mean([voc(model.progress(_shifted(reader.multiview(i), i), reader.instruction).numpy())
                                    for i in ok])  # fmt: skip
    print(f"VOC on the shifted camera: {scores}")  # measured: 0.39-0.45 shift only, 0.54-0.57 with photometric
    assert scores["photometric"] > scores["shift only"] + 0.05
