"""Potential-based reward shaping (Ng, Harada & Russell, 1999) over the batched env, and its "direct" baseline.

    r' = r + scale · (γ Φ(s') (1 − terminated) − Φ(s))        (PBRS: the optimal policies stay optimal)
    r' = r + scale · Φ(s')                                      (direct: the "semantic trap")

Φ of a terminal state is 0 — otherwise the invariance breaks in episodic tasks — while a time-limit
truncation is not terminal: there Φ(s') is the potential of the state the step reached, before the
auto-reset. γ must be the learner's γ. :class:`ShapedEnv` applies either reward to a
:class:`sim.BatchedEnv` and keeps the env's contract, so rsl-rl's adapter and the Gymnasium faces work
over it unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from robo_reward.models.protocol import RewardModel
from robo_reward.shaping.errors import ShapingError
from robo_reward.shaping.potentials import Potential, Refreshable

MODES = ("pbrs", "direct")
SHAPING_TERMS = ("task", "shaping", "potential")  # added to info["reward_terms"]


def shaped_reward(
    reward: torch.Tensor,
    phi: torch.Tensor,
    phi_next: torch.Tensor,
    terminated: torch.Tensor,
    gamma: float,
    scale: float = 1.0,
) -> torch.Tensor:
    """PBRS: ``reward + scale * (gamma * phi_next * (1 - terminated) - phi)``, all (N,).

    ``phi`` is Φ of the state the step started from, ``phi_next`` Φ of the state it reached (for a
    truncated episode the true Φ of its last, pre-reset state); ``terminated`` (bool or 0/1) zeroes Φ
    of terminal states.
    """
    alive = 1.0 - terminated.to(phi_next.dtype)
    return reward + scale * (gamma * phi_next * alive - phi)


def direct_reward(reward: torch.Tensor, phi_next: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Progress as reward, ``reward + scale * phi_next`` (N,): the baseline PBRS is measured against."""
    return reward + scale * phi_next


class ShapedEnv:
    """A :class:`sim.BatchedEnv` whose ``step`` returns the shaped reward; otherwise the same contract.

    ``potential`` scores states (:class:`~robo_reward.shaping.potentials.Potential`). The wrapper keeps
    Φ(s) (N,) of every env's current state (:attr:`phi`); after a step it scores the current states
    once — Φ(s') of the envs that go on, and the new Φ(s) of those that were reset — and asks
    ``potential.final`` only for the pre-reset states it needs: truncated envs for ``pbrs`` (terminal
    ones have Φ = 0), every ended env for ``direct``. ``info["reward_terms"]`` gains the raw terms
    ``"task"`` (the env's reward), ``"shaping"`` (what was added) and ``"potential"`` (Φ(s') used, 0 at
    terminal states for ``pbrs``).

    With ``refresh_every`` > 0 the potential (a refreshable one: the distilled potential) is re-fitted
    every ``refresh_every`` steps on ``refresh_envs`` current states labelled by ``refresh_model``
    (``refresh_steps`` optimiser steps), after the step's reward is computed; Φ(s) is then recomputed,
    so every shaping term uses one potential for both of its ends.
    """

    def __init__(
        self,
        env,
        potential: Potential,
        *,
        mode: str,
        gamma: float,
        learner_gamma: float,
        scale: float = 1.0,
        refresh_every: int = 0,
        refresh_model: RewardModel | None = None,
        refresh_envs: int = 64,
        refresh_steps: int = 8,
    ) -> None:
        if mode not in MODES:
            raise ShapingError(f"shaping mode must be one of {', '.join(MODES)}, got {mode!r}")
        for name, value in (("gamma", gamma), ("learner_gamma", learner_gamma)):
            if not 0.0 < value <= 1.0:
                raise ShapingError(f"{name} must be in (0, 1], got {value}")
        if mode == "pbrs" and not math.isclose(gamma, learner_gamma, rel_tol=0.0, abs_tol=1e-12):
            raise ShapingError(
                f"shaping gamma {gamma} != the learner's gamma {learner_gamma}: "
                "PBRS is policy-invariant only with the learner's gamma"
            )
        if not math.isfinite(scale):
            raise ShapingError(f"shaping scale must be finite, got {scale}")
        if refresh_every < 0:
            raise ShapingError(f"refresh_every must be >= 0 (0: never), got {refresh_every}")
        if refresh_every and (refresh_model is None or not isinstance(potential, Refreshable)):
            raise ShapingError(
                f"refresh_every={refresh_every} needs a refreshable potential (distilled) and a refresh_model; "
                f"got {type(potential).__name__} and {type(refresh_model).__name__}"
            )
        self.env = env
        self.potential = potential
        self.mode, self.gamma, self.learner_gamma, self.scale = mode, float(gamma), float(learner_gamma), float(scale)
        self.refresh_every, self.refresh_model = refresh_every, refresh_model
        self.refresh_envs, self.refresh_steps = refresh_envs, refresh_steps
        self.num_steps = 0
        potential.attach(env)
        self._phi = potential.current(env)

    # -- the shaping ----------------------------------------------------------------------------
    @property
    def phi(self) -> torch.Tensor:
        """Φ of every env's current (post-reset) state: float32 (N,), on ``device``."""
        return self._phi

    def step(self, action: torch.Tensor | np.ndarray):
        """The env's step with the shaped reward; ``info["reward_terms"]`` gains task, shaping, potential."""
        obs, reward, terminated, truncated, info = self.env.step(action)
        current = self.potential.current(self.env)
        need = truncated if self.mode == "pbrs" else terminated | truncated
        ids = need.nonzero().squeeze(1)
        phi_next = current
        if len(ids):
            phi_next = current.clone()
            phi_next[ids] = self.potential.final(self.env, info, ids)
        if self.mode == "pbrs":
            shaped = shaped_reward(reward, self._phi, phi_next, terminated, self.gamma, self.scale)
            phi_next = torch.where(terminated, torch.zeros_like(phi_next), phi_next)
        else:
            shaped = direct_reward(reward, phi_next, self.scale)
        terms = info["reward_terms"]
        if not terms.keys().isdisjoint(SHAPING_TERMS):
            clash = sorted(set(terms) & set(SHAPING_TERMS))
            raise ShapingError(f"the env already has reward terms {clash}; shaping adds {list(SHAPING_TERMS)}")
        terms.update(task=reward, shaping=shaped - reward, potential=phi_next)
        self._phi = current
        self.num_steps += 1
        if self.refresh_every and self.num_steps % self.refresh_every == 0:
            self.potential.refresh(self.env, self.refresh_model, self.refresh_envs, self.refresh_steps)
            self._phi = self.potential.current(self.env)
        return obs, shaped, terminated, truncated, info

    def reset(self, seed: int | None = None) -> torch.Tensor:
        obs = self.env.reset(seed=seed)
        self._phi = self.potential.current(self.env)
        return obs

    def reset_envs(self, ids) -> torch.Tensor:
        obs = self.env.reset_envs(ids)
        self._phi = self.potential.current(self.env)
        return obs

    # -- the rest of the env contract (num_envs, obs_dim, act_dim, episode_step, task, cameras, render,
    # expert, privileged, close, ...) is the wrapped env's own, forwarded by __getattr__ ------------------
    def __enter__(self) -> ShapedEnv:
        return self

    def __exit__(self, *exc) -> None:
        self.env.close()

    def __getattr__(self, name: str) -> Any:
        if name == "env":  # not yet set (during __init__ or unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.env, name)
