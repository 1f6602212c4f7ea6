"""The vision-language reward: VLM-RM's formula, the contract, persistence, and contrastive fine-tuning."""

import numpy as np
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
    with pytest.raises(ValueError, match="no such weights file"):
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


def test_named_weights_come_from_the_cache_or_one_clear_line(tmp_path, monkeypatch):
    from robo_reward.models.clip_weights import WeightsError, create_clip

    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty_cache"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsError) as error:
        create_clip("ViT-B-32", "laion2b_s34b_b79k")
    message = str(error.value)
    assert "\n" not in message and "not in the local model cache" in message and str(tmp_path) in message
    assert "pretrained=/path/to/weights.safetensors" in message
    with pytest.raises(WeightsError, match="no such tag for ViT-B-32; its tags: openai"):
        create_clip("ViT-B-32", "laion9000")
    with pytest.raises(WeightsError, match="not an open_clip model"):
        create_clip("ViT-Q-99")
    with pytest.raises(WeightsError, match="no such weights file"):
        create_clip("ViT-B-32", str(tmp_path / "missing.safetensors"))


def test_a_local_weights_file_loads(tmp_path):
    import open_clip
    from safetensors.torch import save_file

    from robo_reward.models.clip_weights import create_clip

    torch.manual_seed(3)
    source = open_clip.create_model("ViT-B-32")
    path = tmp_path / "vit_b_32.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(path))
    loaded = create_clip("ViT-B-32", path)
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_success_estimate_is_calibrated_on_demo_outcomes_and_separates_them(tmp_path):
    from robo_reward.data.reader import DemoReader
    from robo_reward.data.record import RecordConfig, record
    from robo_reward.models.metrics import auc

    demos = tmp_path / "demos.h5"
    record(RecordConfig(task="push_cube", num_demos=16, out=demos, cameras=("front",), res=32, failure_rate=0.5,
                        seed=2, progress_bar=False))  # fmt: skip
    # a constant rate: 80 steps are too few for a decaying one to train the tiny CLIP (the schedule is not tested here)
    model, summary = train_vlm([demos], tmp_path / "vlm", {"model_cfg": TINY}, steps=80, batch_size=32, lr=2e-3,
                               lr_schedule="constant")  # fmt: skip
    slope, intercept = summary["success_calibration"]
    assert slope > 0 and (slope, intercept) != (1.0, 0.0)  # fitted, and higher goal scores mean success
    with DemoReader(demos) as reader:
        finals = torch.stack([torch.from_numpy(reader.frames(i, "front")[-1]) for i in range(len(reader))])
        outcome = np.array([reader.success(i) for i in range(len(reader))])
        instruction = reader.instruction
    success = model.predict(finals[:, None], instruction)["success"].numpy()
    assert 0 < outcome.sum() < len(outcome)
    print(f"VL success estimate on final frames: AUC {auc(success, outcome):.3f}")
    assert auc(success, outcome) >= 0.8  # measured 0.98 (tiny CLIP, 80 steps)
    assert abs(success[outcome].mean() - success[~outcome].mean()) > 0.2
