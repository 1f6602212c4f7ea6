"""robo_reward: reward learning for robots — demos, reward models, shaping, RL glue and the CLI."""

__version__ = "0.1.0"
