"""robo_reward: reward learning for robots — demos, reward models, shaping, RL glue and the CLI."""

__version__ = "0.1.0"

import os as _os

# libgomp (torch's OpenMP) spins ~300k iterations, ~15 ms here, after every parallel region before its
# threads sleep: a policy or reward forward pass then holds both cores long after it is done, starving
# the simulator's threads and the labeller's other lane. 10k iterations keep the spin within a forward pass
# (measured: no slower) and free the cores soon after. Must be set before torch is imported.
_os.environ.setdefault("GOMP_SPINCOUNT", "10000")
