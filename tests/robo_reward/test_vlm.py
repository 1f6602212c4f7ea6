"""The vision-language reward: VLM-RM's formula, the contract, persistence, and contrastive fine-tuning."""

import pytest
import torch
from torch.nn import functional as F

from robo_reward.cli import main as cli
from robo_reward.models import load
from robo_reward.models.vlm import VLMConfig, VLMReward, train_vlm

TINY = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
}


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VLMReward(VLMConfig(model_cfg=TINY, goals={"push it": ["the cube is on the goal"]})).eval()


def test_alpha_zero_is_cosine_similarity_and_alpha_one_a_projection(model):
    emb = F.normalize(torch.randn(5, 32), dim=-1)
    goal = model._mean_embedding(["the cube is on the goal"])
    base = model._mean_embedding(model.config.baseline_prompts)
    model.config.alpha = 0.0
    assert torch.allclose(model.reward(emb, "push it"), emb @ goal, atol=1e-5)
    model.config.alpha = 1.0
    d = (goal - base) / (goal - base).norm()
    assert torch.allclose(model.reward(emb, "push it"), 1 - 0.5 * ((emb - goal) @ d) ** 2, atol=1e-5)
    # the goal image itself scores the maximum, 1
    assert torch.allclose(model.reward(goal[None], "push it"), torch.ones(1), atol=1e-5)


def test_contract_shapes_range_and_errors(model):
    frames = torch.randint(0, 255, (3, 2, 48, 48, 3), dtype=torch.uint8)
    progress = model.progress(frames, "push it", cameras=["front", "wrist"])
    assert progress.shape == (3,) and ((progress >= 0) & (progress <= 1)).all()
    # an instruction without configured goal prompts is its own goal prompt (zero-shot)
    assert model.progress(frames, "open the drawer", cameras=["front", "wrist"]).shape == (3,)
    with pytest.raises(ValueError, match=r"uint8 \(B, V, H, W, 3\)"):
        model.progress(frames.float(), "push it")
    with pytest.raises(ValueError, match="3 views but 1 cameras"):
        model.progress(torch.zeros(1, 3, 8, 8, 3, dtype=torch.uint8), "push it", cameras=["front"])
    with pytest.raises(FileNotFoundError, match="local path only"):
        VLMReward(VLMConfig(arch="ViT-B-32"), pretrained="/nonexistent/open_clip_weights.bin")


def test_save_load_round_trip(model, tmp_path):
    model.save(tmp_path)
    again = load(tmp_path)
    frames = torch.randint(0, 255, (4, 1, 32, 32, 3), dtype=torch.uint8)
    assert torch.equal(model.progress(frames, "push it"), again.progress(frames, "push it"))


@pytest.mark.slow
def test_finetuning_beats_the_random_weight_floor(tmp_path):
    from robo_reward.data.record import RecordConfig, record
    from robo_reward.models.evaluate import evaluate

    train, heldout = tmp_path / "train.h5", tmp_path / "heldout.h5"
    record(RecordConfig(task="push_cube", num_demos=24, out=train, cameras=("front",), seed=1, progress_bar=False))
    record(RecordConfig(task="push_cube", num_demos=12, out=heldout, cameras=("front",), seed=9, progress_bar=False))
    floor, _ = train_vlm([train], tmp_path / "zero", {}, steps=0, batch_size=32, lr=1e-4)
    tuned, summary = train_vlm([train], tmp_path / "tuned", {}, steps=200, batch_size=32, lr=3e-4)
    before, after = evaluate(floor, heldout)["voc"], evaluate(tuned, heldout)["voc"]
    print(f"VOC random weights {before:.3f} -> fine-tuned {after:.3f} ({summary['train_wall_time_s']} s)")
    assert after > 0.5 and after > before + 0.3
    assert cli(["eval", "--model", str(tmp_path / "tuned"), "--demos", str(heldout)]) == 0
