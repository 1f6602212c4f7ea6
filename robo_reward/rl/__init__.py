"""RL glue: the batched sim env seen through rsl-rl-lib's ``VecEnv`` interface."""

from robo_reward.rl.vec_env import EpisodeLog, RslRlVecEnv

__all__ = ["EpisodeLog", "RslRlVecEnv"]
