"""Demonstration warm start: behaviour cloning of the PPO actor before PPO, then a critic-only start.

Random joint-delta actions almost never close the gripper around a cube, so on grasping tasks PPO on the
sparse reward (plus PBRS) never sees a success; the scripted expert's demonstrations already show one. The
actor's mean is regressed onto the recorded actions of the *successful* demos (mean squared error on the
normalised observation; the actor's observation normaliser is set to the demos' statistics and then held:
measured on pick_place, a normaliser that kept updating moved the clone's inputs under it and took its
success from 95 % to 7 % within 30 iterations even with every weight held), its action std is set low,
and the first PPO iterations train the critic alone
with the cloned actor held: a value function fitted to the cloned policy's returns gives its first
advantages meaning, where an untrained critic's noise would undo the cloning within a few iterations.

Demos recorded with action noise (``robo-reward record --noise 0.3``) visit the states a clone drifts into
and still carry the expert's mean action there (the noise is zero-mean), which is what cloning needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from robo_reward.data.format import DemoFileError
from robo_reward.data.reader import DemoReader


@dataclass
class WarmStartConfig:
    demos: Sequence[str]  # demo files of the task: obs/state (policy observations) + actions
    steps: int = 4000  # Adam steps of behaviour cloning
    lr: float = 1e-3
    batch_size: int = 512
    std: float = 0.2  # the actor's action std after cloning (normalised action units)
    critic_iterations: int = 30  # PPO iterations that train the critic alone, the cloned actor held fixed


def demo_pairs(paths: Sequence[str | Path], task: str, obs_dim: int, act_dim: int) -> tuple[torch.Tensor, ...]:
    """(observations (M, obs_dim), actions (M, act_dim)) of every successful episode of ``paths``.

    One-line :class:`DemoFileError` naming file, episode and key for a demo of another task or shape."""
    obs, actions = [], []
    for path in paths:
        with DemoReader(path) as reader:
            if reader.task != task:
                raise DemoFileError(path, f"demos of task {reader.task!r}, not {task!r}", key="/data")
            for i, name in enumerate(reader.names):
                if not reader.success(i):
                    continue
                group = reader.group(i)
                for key, dim, out in (("obs/state", obs_dim, obs), ("actions", act_dim, actions)):
                    data = group.get(key)
                    if data is None or data.ndim != 2 or data.shape[1] != dim:
                        got = "missing" if data is None else f"shape {data.shape}"
                        raise DemoFileError(path, f"expected (T, {dim}), got {got}", name, key)
                    out.append(torch.from_numpy(np.asarray(data, dtype=np.float32)))
                if len(obs[-1]) != len(actions[-1]):
                    raise DemoFileError(path, f"{len(obs[-1])} observations for {len(actions[-1])} actions", name,
                                        "actions")  # fmt: skip
    if not obs:
        raise DemoFileError(", ".join(str(p) for p in paths), "no successful episode to clone")
    return torch.cat(obs), torch.cat(actions).clamp(-1.0, 1.0)


def start_normalizer(model: torch.nn.Module, obs: torch.Tensor, hold: bool = False) -> None:
    """Set an rsl-rl model's running observation statistics to those of ``obs``; it keeps updating after
    unless ``hold`` (see :func:`hold_normalizer`)."""
    norm = getattr(model, "obs_normalizer", None)
    if norm is None or not hasattr(norm, "count"):  # obs_normalization off
        return
    with torch.no_grad():
        norm._mean.copy_(obs.mean(0, keepdim=True))
        norm._var.copy_(obs.var(0, unbiased=False, keepdim=True))
        norm._std.copy_(norm._var.sqrt())
        norm.count.fill_(len(obs))
    if hold:
        hold_normalizer(model)


def hold_normalizer(model: torch.nn.Module) -> None:
    """Stop an rsl-rl model's observation normaliser from updating (its ``until``: a plain attribute, not in
    checkpoints, so a resumed warm-started run calls this again)."""
    norm = getattr(model, "obs_normalizer", None)
    if norm is not None and hasattr(norm, "count"):
        norm.until = max(int(norm.count), 1)


def clone_actor(actor: torch.nn.Module, obs: torch.Tensor, actions: torch.Tensor, cfg: WarmStartConfig,
                seed: int = 0) -> dict:  # fmt: skip
    """Regress ``actor``'s deterministic output onto ``actions``; set its std to ``cfg.std``. Returns the
    number of pairs, the loss before and after, and the share of held-out pairs (10 %) within 0.1 of the demo."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(obs), generator=generator)
    held, train = order[: len(obs) // 10], order[len(obs) // 10 :]
    start_normalizer(actor, obs[train], hold=True)
    params = [p for name, p in actor.named_parameters() if name.startswith("mlp.")]
    optimizer = torch.optim.Adam(params, lr=cfg.lr)

    if len(actor.obs_groups) != 1:
        raise ValueError(f"warm start: the actor reads observation groups {actor.obs_groups}; demos hold one")
    group = actor.obs_groups[0]

    def act(index: torch.Tensor) -> torch.Tensor:
        return actor({group: obs[index]})

    def loss_on(index: torch.Tensor) -> torch.Tensor:
        return (act(index) - actions[index]).pow(2).mean()

    was_training = actor.training
    actor.eval()  # the normaliser's statistics stay those of the demos while cloning
    with torch.no_grad():
        before = float(loss_on(held)) if len(held) else None
    for _ in range(cfg.steps):
        batch = train[torch.randint(len(train), (cfg.batch_size,), generator=generator)]
        loss = loss_on(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = float(loss_on(held)) if len(held) else None
        close = float(((act(held) - actions[held]).abs() < 0.1).float().mean()) if len(held) else None
        set_std(actor, cfg.std)
    actor.train(was_training)
    return {"pairs": len(obs), "steps": cfg.steps, "heldout_mse_before": before, "heldout_mse": after,
            "heldout_within_0.1": close, "std": cfg.std}  # fmt: skip


def set_std(actor: torch.nn.Module, std: float) -> None:
    """Set a Gaussian actor's state-independent action std (rsl-rl's ``scalar`` or ``log`` parameterisation)."""
    dist = actor.distribution
    if hasattr(dist, "std_param"):
        dist.std_param.fill_(std)
    elif hasattr(dist, "log_std_param"):
        dist.log_std_param.fill_(float(np.log(std)))
    else:
        raise ValueError(f"warm_start.std: the actor's {type(dist).__name__} has no state-independent std to set")


class HeldActor:
    """Within ``with``: the actor's parameters take no gradient (PPO then trains the critic alone), and the
    learning rate an adaptive schedule reaches meanwhile is put back after."""

    def __init__(self, algorithm) -> None:
        self.algorithm = algorithm

    def __enter__(self) -> HeldActor:
        self.learning_rate = self.algorithm.learning_rate
        self.algorithm.actor.requires_grad_(False)
        return self

    def __exit__(self, *exc) -> None:
        self.algorithm.actor.requires_grad_(True)
        self.algorithm.learning_rate = self.learning_rate
        for group in self.algorithm.optimizer.param_groups:
            group["lr"] = self.learning_rate
