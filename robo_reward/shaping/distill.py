"""A distilled potential (after ONI): a small MLP on the policy observation, fitted to a reward model.

Rendering and a vision model cost far more than a physics step; a network on the observation costs
nothing next to it. So the expensive reward model labels a *subset* of states — first the demo frames
(the labels ``robo-reward label`` wrote, paired with the demo's ``obs/state``, which is exactly the
env's policy observation), then, with :meth:`DistilledPotential.refresh`, a random sample of the
states the policy visits — and the MLP is fitted to those labels and used at full simulation speed.

The observation is normalised with the mean and std of the data it was first fitted on (frozen after,
so refreshes do not move the input under the network); the output is a sigmoid, so Φ is in [0, 1].
Replay: the demo frames stay in it for good (they anchor Φ on the task's path), the labelled env
states go into a bounded FIFO; each minibatch is drawn half from each once both exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.nn import functional as F

from robo_reward.data.format import DemoFileError
from robo_reward.data.reader import DemoReader
from robo_reward.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from robo_reward.models.protocol import RewardModel
from robo_reward.shaping.errors import ShapingError
from robo_reward.shaping.potentials import check_env_for_model, score_frames

KIND = "distilled_potential"
STD_FLOOR = 0.01  # observation normaliser's smallest std (m, rad, m/s)


@dataclass
class DistillConfig:
    obs_dim: int
    hidden: list[int] = field(default_factory=lambda: [128, 128])
    lr: float = 1e-3
    batch_size: int = 256
    buffer_size: int = 20_000  # labelled env states kept for refreshes (FIFO); demo frames are kept apart
    instruction: str = ""  # what the labels were made for; set by fit_from_demos
    label_name: str = ""
    kind: str = KIND


class PotentialNet(nn.Module):
    """obs float32 (B, obs_dim) → Φ (B,) in [0, 1]; the normaliser is part of the weights."""

    def __init__(self, obs_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.register_buffer("obs_mean", torch.zeros(obs_dim))
        self.register_buffer("obs_std", torch.ones(obs_dim))
        layers, width = [], obs_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ELU()]
            width = size
        self.mlp = nn.Sequential(*layers, nn.Linear(width, 1))

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        return self.mlp((obs - self.obs_mean) / self.obs_std).squeeze(-1)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(obs))


class _Fifo:
    """A bounded FIFO of (obs (D,), target) rows."""

    def __init__(self, capacity: int, obs_dim: int) -> None:
        self.obs = torch.zeros(capacity, obs_dim)
        self.target = torch.zeros(capacity)
        self.size, self._next = 0, 0

    def add(self, obs: torch.Tensor, target: torch.Tensor) -> None:
        capacity = len(self.obs)
        obs, target = obs[-capacity:], target[-capacity:]
        rows = (self._next + torch.arange(len(obs))) % capacity
        self.obs[rows], self.target[rows] = obs, target
        self._next = int(rows[-1] + 1) % capacity if len(rows) else self._next
        self.size = min(capacity, self.size + len(obs))


class DistilledPotential:
    """Φ(s) = MLP(policy observation), fitted to a reward model's progress (module docstring)."""

    def __init__(self, obs_dim: int, *, hidden: Sequence[int] = (128, 128), lr: float = 1e-3, batch_size: int = 256,
                 buffer_size: int = 20_000, seed: int = 0) -> None:  # fmt: skip
        self.config = DistillConfig(obs_dim, list(hidden), lr, batch_size, buffer_size)
        with torch.random.fork_rng(devices=[]):  # seeded initial weights, the caller's RNG untouched
            torch.manual_seed(seed)
            self.net = PotentialNet(obs_dim, hidden)
        self.fit_report: dict = {}
        self._generator = torch.Generator().manual_seed(seed)
        self._optimizer = torch.optim.Adam(self.net.parameters(), lr=lr)
        self._normalised = False
        self._demo_obs, self._demo_target = torch.zeros(0, obs_dim), torch.zeros(0)
        self._online = _Fifo(buffer_size, obs_dim)

    # -- the Potential protocol ------------------------------------------------------------------
    @torch.no_grad()
    def phi(self, obs: torch.Tensor) -> torch.Tensor:
        """Φ (B,) float32 for observations (B, obs_dim), on ``obs``'s device."""
        return self.net(obs.float().cpu()).to(obs.device)

    def attach(self, env) -> None:
        if env.obs_dim != self.config.obs_dim:
            raise ShapingError(
                f"the distilled potential takes {self.config.obs_dim} obs entries; the env has {env.obs_dim}"
            )

    def current(self, env) -> torch.Tensor:
        return self.phi(env.observation)

    def final(self, env, info: dict, ids: torch.Tensor) -> torch.Tensor:
        return self.phi(info["final_obs"][ids])

    # -- fitting -----------------------------------------------------------------------------------
    def fit_from_demos(self, paths: Sequence[str | Path], label_name: str, *, steps: int = 1000,
                       holdout: float = 0.2) -> dict:  # fmt: skip
        """Fit Φ to ``/labels/<label_name>/demo_<i>/progress`` against each demo's ``obs/state``.

        ``holdout`` of the episodes (at least one, when there are two or more) are kept out of training;
        the returned report gives Φ's ``mae`` and ``spearman`` against the labels on their frames.
        """
        episodes = _read_labelled(paths, label_name, self.config.obs_dim)
        instructions = sorted({instruction for _, _, instruction in episodes})
        if len(instructions) > 1:
            raise ShapingError(f"demo files of different instructions {instructions}: one potential per task")
        self.config.instruction, self.config.label_name = episodes[0][2], label_name
        order = torch.randperm(len(episodes), generator=self._generator).tolist()
        held = order[: round(holdout * len(episodes))] if len(episodes) > 1 else []
        if len(episodes) > 1 and holdout > 0 and not held:
            held = order[:1]
        train = [i for i in order if i not in held]
        obs = torch.cat([episodes[i][0] for i in train])
        target = torch.cat([episodes[i][1] for i in train])
        self._set_normaliser(obs)
        self._demo_obs, self._demo_target = obs, target
        loss = self._train(steps)
        report = {"episodes": len(train), "frames": len(obs), "steps": steps, "final_loss": loss}
        if held:
            held_obs = torch.cat([episodes[i][0] for i in held])
            held_target = torch.cat([episodes[i][1] for i in held])
            pred = self.phi(held_obs)
            report["heldout_episodes"], report["heldout_frames"] = len(held), len(held_obs)
            report["mae"] = float((pred - held_target).abs().mean())
            report["spearman"] = float(spearmanr(pred.numpy(), held_target.numpy()).statistic)
        self.fit_report = report
        return report

    def refresh(self, env, model: RewardModel, num_envs: int, steps: int) -> dict:
        """Label a random ``num_envs`` of ``env``'s current states with ``model`` (rendered views), add them
        to the replay, and take ``steps`` Adam steps. Returns the number labelled, the replay size and the
        last loss."""
        with torch.inference_mode(False), torch.enable_grad():  # called from inside rsl-rl's rollout
            return self._refresh(env, model, num_envs, steps)

    def _refresh(self, env, model: RewardModel, num_envs: int, steps: int) -> dict:
        views = check_env_for_model(model, env)
        ids = torch.randperm(env.num_envs, generator=self._generator)[: max(1, min(num_envs, env.num_envs))]
        instruction = self.config.instruction or env.instruction
        target = score_frames(model, instruction, env.render(ids.numpy()), views)
        # clones: tensors made under inference mode (the env's, the model's) cannot take part in autograd
        obs = env.observation[ids.to(env.device)].float().cpu().clone()
        target = target.clone()
        self._set_normaliser(obs)
        self._online.add(obs, target)
        return {"labelled": len(ids), "replay": len(self._demo_obs) + self._online.size, "loss": self._train(steps)}

    def _set_normaliser(self, obs: torch.Tensor) -> None:
        """Statistics of the first data Φ is fitted on, then frozen. The std has a floor of 1 cm / 0.01 rad:
        an entry that barely varies in a few demos (a goal's height) would otherwise turn into noise."""
        if self._normalised:
            return
        std = obs.std(0).nan_to_num(1.0) if len(obs) > 1 else torch.ones_like(obs[0])
        self.net.obs_mean.copy_(obs.mean(0))
        self.net.obs_std.copy_(std.clamp_min(STD_FLOOR))
        self._normalised = True

    def _train(self, steps: int) -> float | None:
        """``steps`` Adam steps of binary cross-entropy against the soft progress targets; the last loss."""
        online = self._online
        both = [(self._demo_obs, self._demo_target), (online.obs[: online.size], online.target[: online.size])]
        sources = [(o, t) for o, t in both if len(o)]
        if not sources or steps < 1:
            return None
        per_source = max(1, self.config.batch_size // len(sources))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # matrices this small: OpenMP's hand-offs cost more than a second core gives
        self.net.train()
        try:
            for _ in range(steps):
                picks = [torch.randint(len(o), (per_source,), generator=self._generator) for o, _ in sources]
                obs = torch.cat([o[i] for (o, _), i in zip(sources, picks, strict=True)])
                target = torch.cat([t[i] for (_, t), i in zip(sources, picks, strict=True)])
                loss = F.binary_cross_entropy_with_logits(self.net.logits(obs), target.clamp(0.0, 1.0))
                self._optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self._optimizer.step()
        finally:
            self.net.eval()
            torch.set_num_threads(threads)
        return float(loss.detach())

    # -- persistence --------------------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """``weights.safetensors`` (the net and its normaliser) + ``config.json`` (settings, fit report).
        The replay is not saved: a loaded potential refreshes on new labels only."""
        config = {**asdict(self.config), "normalised": self._normalised, "fit_report": self.fit_report}
        return save_checkpoint(folder, self.net.state_dict(), config)

    @classmethod
    def load(cls, folder: str | Path) -> DistilledPotential:
        tensors, config = load_checkpoint(folder)
        if config.get("kind") != KIND:
            raise CheckpointError(f"{Path(folder) / 'config.json'}: kind {config.get('kind')!r}, not {KIND!r}")
        fields = {key: config[key] for key in ("hidden", "lr", "batch_size", "buffer_size") if key in config}
        try:
            potential = cls(int(config["obs_dim"]), **fields)
            potential.net.load_state_dict(tensors)
        except (KeyError, TypeError, RuntimeError) as exc:
            reason = str(exc).strip().splitlines()[0]
            raise CheckpointError(f"{folder}: not a distilled potential of this version ({reason})") from None
        potential.config.instruction = config.get("instruction", "")
        potential.config.label_name = config.get("label_name", "")
        potential.fit_report = config.get("fit_report", {})
        potential._normalised = bool(config.get("normalised", True))
        potential.net.eval()
        return potential


def _read_labelled(paths: Sequence[str | Path], label_name: str, obs_dim: int) -> list:
    """[(obs float32 (T, D), progress float32 (T,), instruction)] per episode of every file; one-line
    :class:`DemoFileError` naming file, episode and key for a missing or mismatched label or state."""
    if not paths:
        raise ShapingError("the distilled potential needs at least one labelled demo file")
    episodes = []
    for path in paths:
        with DemoReader(path) as reader:
            for i, name in enumerate(reader.names):
                key = f"/labels/{label_name}/{name}/progress"
                labels = reader.labels(label_name, i)
                if labels is None:
                    raise DemoFileError(path, f"missing (label it: robo-reward label {path} --model DIR "
                                              f"--name {label_name})", name, key)  # fmt: skip
                state = reader.group(i).get("obs/state")
                if state is None or state.ndim != 2 or state.shape[1] != obs_dim:
                    got = "missing" if state is None else f"shape {state.shape}"
                    raise DemoFileError(path, f"expected (T, {obs_dim}) policy observations, got {got}", name,
                                        "obs/state")  # fmt: skip
                if len(labels) != len(state):
                    raise DemoFileError(path, f"{len(labels)} labels for {len(state)} frames", name, key)
                obs = torch.from_numpy(np.asarray(state, dtype=np.float32))
                episodes.append((obs, torch.from_numpy(np.asarray(labels, dtype=np.float32)), reader.instruction))
    if not episodes:
        raise ShapingError(f"no episodes in {', '.join(str(p) for p in paths)}")
    return episodes
