"""Vision-language reward (VLM-RM, Rocamonde et al. 2023) on open_clip models.

    g = mean normalised embedding of the goal prompts, b = same for the baseline prompts,
    d = g - b,  P = d dᵀ / |d|²,  M = α P + (1 - α) I,  R(x) = 1 - ½ |(x̂ - g) M|²

With unit vectors R lies in [-1, 1]; ``progress`` reports (R + 1) / 2 so that every reward model
shares one [0, 1] contract. Any open_clip architecture works, with weights from a local file
(``pretrained=/path/to/weights``: no hub at run time); without weights the model is randomly
initialised — the floor every trained reward must beat. :func:`finetune` trains a small CLIP
contrastively on demo frames paired with captions of their privileged stage, so that a real VL reward
exists on a machine with no downloadable weights.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import open_clip
import torch
from torch import nn
from torch.nn import functional as F

from robo_reward.models.checkpoint import save_checkpoint
from robo_reward.models.clip_weights import create_clip
from robo_reward.models.protocol import progress_in_eval_mode
from robo_reward.models.schedule import check_schedule, learning_rate
from robo_reward.progress import progress_bar as make_progress_bar  # `progress_bar` is the on/off flag here

# A CLIP small enough to fine-tune on 2 CPU cores in minutes: 64 px, 8 px patches, 4 x 192 vision
# transformer, 2 x 128 text transformer (≈ 8 M parameters, 6 M of them the token embedding).
SMALL_CLIP = {
    "embed_dim": 128,
    "vision_cfg": {"image_size": 64, "layers": 4, "width": 192, "patch_size": 8, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 128, "heads": 2, "layers": 2},
}
BASELINE = ["a robot arm and objects on a table"]
MEAN = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)


@dataclass
class VLMConfig:
    goals: dict[str, list[str]] = field(default_factory=dict)  # instruction -> goal prompts (default: itself)
    baseline_prompts: list[str] = field(default_factory=lambda: list(BASELINE))
    alpha: float = 0.5  # 0: cosine similarity to the goal; 1: projection on the goal - baseline direction
    arch: str | None = None  # an open_clip model name; None: the custom ``model_cfg``
    model_cfg: dict = field(default_factory=lambda: dict(SMALL_CLIP))
    cameras: list[str] = field(default_factory=lambda: ["front"])
    # success = sigmoid(a · (goal logit − baseline logit) + b), fitted on final frames of successful and
    # failed demos by :func:`calibrate_success`; (1, 0) is CLIP's zero-shot P(goal | image)
    success_calibration: list[float] = field(default_factory=lambda: [1.0, 0.0])
    kind: str = "vlm"


class VLMReward(nn.Module):
    """VLM-RM over an open_clip model; ``progress(frames, instruction)`` per the reward-model contract."""

    def __init__(self, config: VLMConfig, pretrained: str | Path | None = None) -> None:
        super().__init__()
        self.config = config
        if config.arch:
            self.clip = create_clip(config.arch, pretrained)
            self.tokenizer = open_clip.get_tokenizer(config.arch)
        else:
            self.clip = open_clip.CLIP(**config.model_cfg)
            self.tokenizer = open_clip.tokenizer.SimpleTokenizer(
                context_length=config.model_cfg["text_cfg"]["context_length"]
            )
        size = self.clip.visual.image_size
        self.image_size = size[0] if isinstance(size, tuple | list) else int(size)
        self._text_cache: dict[tuple[str, ...], torch.Tensor] = {}

    # -- embeddings ---------------------------------------------------------------------------
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 (N, H, W, 3) → unit image embeddings (N, E)."""
        x = images.permute(0, 3, 1, 2).float().div_(255.0)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", antialias=True)
        return F.normalize(self.clip.encode_image((x - MEAN) / STD), dim=-1)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        """Unit text embeddings (P, E)."""
        return F.normalize(self.clip.encode_text(self.tokenizer(prompts)), dim=-1)

    def _mean_embedding(self, prompts: list[str]) -> torch.Tensor:
        key = tuple(prompts)
        if self.training or key not in self._text_cache:
            with torch.inference_mode(not self.training):
                self._text_cache[key] = F.normalize(self.encode_text(prompts).mean(0), dim=-1)
        return self._text_cache[key]

    def reward(self, image_emb: torch.Tensor, instruction: str) -> torch.Tensor:
        """VLM-RM reward R in [-1, 1] for unit image embeddings (N, E)."""
        goal = self._mean_embedding(self.config.goals.get(instruction, [instruction]))
        base = self._mean_embedding(self.config.baseline_prompts)
        d = goal - base
        diff = image_emb - goal
        along = (diff @ d)[:, None] * d / d.dot(d).clamp_min(1e-12)  # P projects onto d
        alpha = self.config.alpha
        projected = alpha * along + (1 - alpha) * diff  # (x̂ - g) M, M symmetric
        return 1.0 - 0.5 * projected.pow(2).sum(-1)

    def success_score(self, image_emb: torch.Tensor, instruction: str) -> torch.Tensor:
        """Goal logit − baseline logit (N,) at the model's own (learned) logit scale: CLIP's zero-shot
        "which caption fits" (the loss :func:`finetune` trains), not R's "how close to the goal"."""
        goal = self._mean_embedding(self.config.goals.get(instruction, [instruction]))
        base = self._mean_embedding(self.config.baseline_prompts)
        return self.clip.logit_scale.exp() * image_emb @ (goal - base)

    def success(self, image_emb: torch.Tensor, instruction: str) -> torch.Tensor:
        """P(success | image) in [0, 1] for unit image embeddings (N, E), calibrated on demos' outcomes."""
        slope, intercept = self.config.success_calibration
        return torch.sigmoid(slope * self.success_score(image_emb, instruction) + intercept)

    # -- the reward-model contract (robo_reward.models.protocol.RewardModel) ----------------------
    resizes = True  # frames of any size are resized to the CLIP's input size (``image_size``)

    @property
    def cameras(self) -> list[str]:
        return list(self.config.cameras)

    def check_frames(self, frames, cameras) -> tuple[torch.Tensor, list[str]]:
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 5 or frames.shape[-1] != 3:
            raise ValueError(f"frames must be uint8 (B, V, H, W, 3), got {frames.dtype} {tuple(frames.shape)}")
        cameras = list(cameras) if cameras is not None else self.config.cameras[: frames.shape[1]]
        if len(cameras) != frames.shape[1]:
            raise ValueError(f"frames have {frames.shape[1]} views but {len(cameras)} cameras were named ({cameras})")
        return frames, cameras

    @torch.inference_mode()
    def predict(self, frames, instruction: str, cameras: list[str] | None = None, bf16: bool = False) -> dict:
        """Progress (B,) = (R + 1) / 2 and success (B,) = P(goal | image), each averaged over the views
        the reward uses."""
        frames, cameras = self.check_frames(frames, cameras)
        views = [v for v, cam in enumerate(cameras) if cam in self.config.cameras] or list(range(len(cameras)))
        batch = frames.shape[0]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            emb = self.encode_images(frames[:, views].flatten(0, 1)).float()
        r = self.reward(emb, instruction).view(batch, len(views)).mean(1)
        progress = ((r + 1.0) / 2.0).clamp(0.0, 1.0)
        success = self.success(emb, instruction).view(batch, len(views)).mean(1)
        return {"progress": progress, "success": success}

    def progress(self, frames, instruction: str, cameras: list[str] | None = None) -> torch.Tensor:
        return progress_in_eval_mode(self, frames, instruction, cameras)

    def task_id(self, instruction: str) -> int:
        """Any instruction works zero-shot (it becomes its own goal prompt)."""
        return 0

    # -- persistence --------------------------------------------------------------------------------
    def save(self, folder: str | Path, extra: dict | None = None) -> Path:
        return save_checkpoint(folder, self.clip.state_dict(), {**asdict(self.config), **(extra or {})})

    @classmethod
    def from_checkpoint(cls, tensors: dict[str, torch.Tensor], config: dict) -> VLMReward:
        fields = VLMConfig.__dataclass_fields__
        model = cls(VLMConfig(**{key: value for key, value in config.items() if key in fields}))
        model.clip.load_state_dict(tensors)
        return model.eval()


def finetune(
    model: VLMReward,
    frames: torch.Tensor,
    stages: np.ndarray,
    captions: list[str],
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-4,
    seed: int = 0,
    progress_bar: bool = True,
    lr_schedule: str = "cosine",
    warmup_steps: int = 100,
) -> list[float]:
    """Contrastive fine-tuning: images (F, H, W, 3) against the captions of their stages (F,).

    Each image's positive is its stage caption, the other stages' captions are its negatives
    (CLIP's loss with the caption set as the text batch). Returns the loss per step.
    """
    gen = torch.Generator().manual_seed(seed)
    stages_t = torch.as_tensor(stages, dtype=torch.long)
    opt = torch.optim.AdamW(model.clip.parameters(), lr=lr, weight_decay=0.05)
    tokens = model.tokenizer(captions)
    model.train()
    losses = []
    for step in make_progress_bar(iterable=range(steps), desc="finetune vlm", disable=not progress_bar):
        idx = torch.randint(0, len(frames), (batch_size,), generator=gen)
        images = model.encode_images(frames[idx])
        texts = F.normalize(model.clip.encode_text(tokens), dim=-1)
        logits = model.clip.logit_scale.exp() * images @ texts.T
        loss = F.cross_entropy(logits, stages_t[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = learning_rate(lr, step, steps, lr_schedule, warmup_steps)
        opt.step()
        losses.append(loss.item())
    model.eval()
    model._text_cache.clear()
    return losses


def calibrate_success(model: VLMReward, finals: torch.Tensor, succeeded: list[bool], instruction: str,
                      iterations: int = 100) -> list[float]:  # fmt: skip
    """(a, b) of ``success = sigmoid(a · score + b)``: a logistic fit of the episodes' outcomes on the
    success scores of their final frames (uint8 (N, H, W, 3)). With one outcome only there is nothing
    to separate, and the zero-shot (1, 0) stays."""
    labels = torch.tensor(succeeded, dtype=torch.float32)
    if labels.min() == labels.max():
        return [1.0, 0.0]
    model.eval()
    with torch.no_grad():  # not inference mode: the scores enter the fit below
        scores = model.success_score(model.encode_images(finals), instruction).float()
    scale = scores.std().clamp_min(1e-6)
    params = torch.zeros(2, requires_grad=True)
    opt = torch.optim.LBFGS([params], max_iter=iterations, line_search_fn="strong_wolfe")

    def loss() -> torch.Tensor:
        opt.zero_grad()
        value = F.binary_cross_entropy_with_logits(params[0] * scores / scale + params[1], labels)
        value = value + 1e-3 * params[0] ** 2  # separable outcomes: keep the slope finite
        value.backward()
        return value

    opt.step(loss)
    slope, intercept = params.detach().tolist()
    return [slope / float(scale), intercept]


def train_vlm(data: list[str | Path], out: str | Path, model_cfg: dict, steps: int, batch_size: int, lr: float,
              seed: int = 0, pretrained: str | None = None, name: str = "vlm", lr_schedule: str = "cosine",
              warmup_steps: int = 100) -> tuple[VLMReward, dict]:  # fmt: skip
    """Set up a VL reward for the demos' task and, if ``steps`` > 0, fine-tune it on their stage captions.

    The goal prompt becomes the caption of the task's final stage, the baseline that of its first.
    """
    import time

    import sim
    from robo_reward.data.reader import DemoReader

    check_schedule(lr_schedule, "reward.train")
    torch.manual_seed(seed)
    config = VLMConfig(**{key: value for key, value in model_cfg.items() if key in VLMConfig.__dataclass_fields__})
    model = VLMReward(config, pretrained=pretrained)
    camera = config.cameras[0]
    frames, stages, finals, outcomes, task, instruction = [], [], [], [], None, None
    for path in data:
        with DemoReader(path) as reader:
            if task not in (None, reader.task):
                raise ValueError(f"{path}: task {reader.task!r}; one VL reward per task ({task!r} so far)")
            task, instruction = reader.task, reader.instruction
            for i in range(len(reader)):
                stage = reader.privileged(i, "stage")
                if stage is None:
                    raise ValueError(f"{path}: {reader.names[i]}: no privileged/stage to caption")
                frames.append(torch.from_numpy(reader.frames(i, camera)))
                stages.append(stage)
                finals.append(frames[-1][-1])
                outcomes.append(reader.success(i))
    if task not in sim.TASKS:
        raise ValueError(f"no stage captions for task {task!r}; known tasks: {', '.join(sim.TASKS)}")
    captions = list(sim.TASKS[task].stage_captions)
    config.goals = {instruction: [captions[-1]]}
    config.baseline_prompts = [captions[0]]
    start = time.perf_counter()
    losses = (
        finetune(model, torch.cat(frames), np.concatenate(stages), captions, steps, batch_size, lr, seed,
                 lr_schedule=lr_schedule, warmup_steps=warmup_steps)
        if steps
        else []
    )
    model.config.success_calibration = calibrate_success(model, torch.stack(finals), outcomes, instruction)
    summary = {"steps": steps, "train_wall_time_s": round(time.perf_counter() - start, 1), "task": task,
               "final_loss": losses[-1] if losses else None, "captions": captions,
               "success_calibration": model.config.success_calibration}  # fmt: skip
    model.save(out, extra={"name": name, "training": summary})
    return model, summary
