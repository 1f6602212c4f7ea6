"""``robo-reward record``: demonstrations from the batched simulator and its scripted experts.

Reward models need negatives, so a ``failure_rate`` share of episodes is spoiled on purpose: either
heavy action noise (``noisy``) or a cut at a random point before the expert would finish
(``early_stop``: at a random step count or a random privileged progress, whichever comes first; an
early-stop episode the expert still finished first is dropped and its env starts a new episode, so
every ``early_stop`` episode is a failure). Every episode's ``success`` attribute is what really
happened, whatever its mode.

With ``stop_after_success`` = N an episode ends N frames after its first frame showing success, as a person
stops recording once the task is done; by default it runs to the env's time limit. A task judged at its last
step (push_cube, open_drawer) otherwise leaves a long still tail — half of a push_cube episode — whose frames
carry no order to learn or to measure (the simulator's own progress scores VOC 0.89 on such demos, 0.995
when they end 10 frames after success).

With ``randomize`` (or a ``task_config`` whose ``randomize.enabled`` is set) the task's domain randomisation is
on (``sim/randomize.py``) and each episode stores the parameters its env drew as the attribute
``randomization`` (a JSON string).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

import sim
from robo_reward.data.writer import DemoWriter, Episode
from robo_reward.progress import progress_bar

FAILURE_MODES = ("noisy", "early_stop")
NOISY_STD = 1.5  # action noise of a "noisy" episode (normalised units): the expert then fails ~95 % of the time


@dataclass
class RecordConfig:
    task: str = "push_cube"
    num_demos: int = 200
    out: str | Path = "demos/demos.h5"
    cameras: tuple[str, ...] | None = None  # default: every camera of the task
    res: int = 64
    failure_rate: float = 0.0
    noise: float = 0.0  # action noise std on every episode (expert ones included)
    num_envs: int = 16
    seed: int = 0
    append: bool = False
    task_config: dict | None = None
    randomize: bool = False  # turn the task's domain randomisation on (task_config's randomize block)
    stop_after_success: int | None = None  # end an episode this many frames after its first success frame
    progress_bar: bool = True

    def check(self) -> None:
        """Refuse what cannot give a demo file, before the simulator starts (one-line ``ValueError``)."""
        if self.task not in sim.TASKS:
            raise ValueError(f"--task {self.task}: unknown task; known: {', '.join(sorted(sim.TASKS))}")
        for flag, value in (("--num-demos", self.num_demos), ("--num-envs", self.num_envs)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{flag} {value}: must be at least 1")
        if not 0.0 <= self.failure_rate <= 1.0:
            raise ValueError(f"--failure-rate {self.failure_rate}: must be in [0, 1]")
        if not 0.0 <= self.noise:
            raise ValueError(f"--noise {self.noise}: must be ≥ 0")
        if self.stop_after_success is not None and (
            not isinstance(self.stop_after_success, int) or self.stop_after_success < 0
        ):
            raise ValueError(f"--stop-after-success {self.stop_after_success}: must be an integer ≥ 0")
        if self.res < 16:
            raise ValueError(f"--res {self.res}: must be at least 16 pixels")
        out = Path(self.out)
        if out.is_dir() or str(self.out).endswith(("/", "\\")):
            raise ValueError(f"--out {self.out}: is a folder; give a file path (e.g. {out / 'demos.h5'})")
        if self.cameras is not None:
            known = sim.TASKS[self.task].cameras
            unknown = [camera for camera in self.cameras if camera not in known]
            if unknown or not self.cameras:
                raise ValueError(f"--cameras {','.join(self.cameras)}: {self.task} has cameras {', '.join(known)}")


class _Buffer:
    """One env's episode in progress."""

    def __init__(self, mode: str, stop_at: int | None = None, stop_progress: float | None = None) -> None:
        self.mode, self.stop_at, self.stop_progress = mode, stop_at, stop_progress
        self.frames: list[np.ndarray] = []
        self.randomization: dict | None = None  # the env's draw for this episode, when randomisation is on
        self.first_success: int | None = None  # index of its first frame showing success
        self.rows: dict[str, list] = {k: [] for k in ("state", "actions", "rewards", "dones", "progress", "stage")}

    def episode(self, cameras: list[str], success: bool, source: str, seed: int) -> Episode:
        frames = np.stack(self.frames)  # (T, V, H, W, 3)
        rows = {k: np.asarray(v) for k, v in self.rows.items()}
        return Episode(
            frames={cam: np.ascontiguousarray(frames[:, v]) for v, cam in enumerate(cameras)},
            state=rows["state"].astype(np.float32),
            actions=rows["actions"].astype(np.float32),
            rewards=rows["rewards"].astype(np.float32),
            dones=rows["dones"].astype(np.uint8),
            success=success,
            source=source,
            privileged={"progress": rows["progress"].astype(np.float32), "stage": rows["stage"].astype(np.int32)},
            attrs={"mode": self.mode, "seed": seed}
            | ({"randomization": json.dumps(self.randomization)} if self.randomization is not None else {}),
        )


def record(cfg: RecordConfig) -> dict:
    """Record ``cfg.num_demos`` episodes into ``cfg.out``; returns a summary."""
    cfg.check()
    task_config = copy.deepcopy(cfg.task_config)
    if cfg.randomize:
        task_config = task_config or {}
        task_config["randomize"] = {**task_config.get("randomize", {}), "enabled": True}
    env = sim.make(
        cfg.task, num_envs=cfg.num_envs, seed=cfg.seed, cameras=cfg.cameras, render_size=(cfg.res, cfg.res),
        config=task_config,
    )  # fmt: skip
    rng = np.random.default_rng(cfg.seed)
    cameras = list(env.cameras)
    env_args = {
        "env_name": cfg.task, "type": "robo_reward.sim", "seed": cfg.seed, "res": cfg.res,
        "env_kwargs": {"config": env.task.config}, "failure_rate": cfg.failure_rate, "noise": cfg.noise,
        "stop_after_success": cfg.stop_after_success,
    }  # fmt: skip
    typical = env.max_episode_steps / 3  # running estimate of an expert episode's length, for early stops

    def new_buffer() -> _Buffer:
        if rng.random() >= cfg.failure_rate:
            return _Buffer("expert")
        mode = FAILURE_MODES[rng.integers(len(FAILURE_MODES))]
        if mode == "noisy":
            return _Buffer(mode)
        return _Buffer(mode, int(rng.uniform(0.15, 0.85) * typical) + 1, float(rng.uniform(0.15, 0.85)))

    buffers: list[_Buffer | None] = [new_buffer() for _ in range(min(env.num_envs, cfg.num_demos))]
    buffers += [None] * (env.num_envs - len(buffers))  # idle envs: stepped with the batch, not rendered
    started, written, successes = len(buffers) - buffers.count(None), 0, 0
    bar = progress_bar(total=cfg.num_demos, desc=f"record {cfg.task}", unit="demo", disable=not cfg.progress_bar)
    with DemoWriter(
        cfg.out, task=cfg.task, instruction=env.instruction, fps=1.0 / env.dt, cameras=cameras,
        env_args=env_args, stage_names=list(env.task.stage_names), append=cfg.append,
    ) as writer, bar:  # fmt: skip
        obs = env.observation
        while written < cfg.num_demos:
            active = [i for i, buf in enumerate(buffers) if buf is not None]
            frames = dict(zip(active, env.render(active).numpy(), strict=True))
            shown = env.privileged()  # progress and stage of the states in these frames
            action = env.expert(obs).numpy()
            noise_std = np.array([NOISY_STD if b is not None and b.mode == "noisy" else cfg.noise for b in buffers])
            action = np.clip(action + rng.normal(size=action.shape) * noise_std[:, None], -1.0, 1.0)
            next_obs, reward, terminated, truncated, info = env.step(torch.from_numpy(action.astype(np.float32)))
            done = (terminated | truncated).numpy()
            cut = []
            for i in active:
                buf = buffers[i]
                rows = buf.rows
                if env.randomizer is not None and not buf.frames:  # its first frame: the env's current episode
                    buf.randomization = env.randomization([i])[0]
                buf.frames.append(frames[i])
                rows["state"].append(obs[i].numpy())
                rows["actions"].append(action[i])
                rows["rewards"].append(float(reward[i]))
                rows["progress"].append(float(shown["progress"][i]))
                rows["stage"].append(int(shown["stage"][i]))
                if buf.first_success is None and bool(shown["success"][i]):
                    buf.first_success = len(buf.frames) - 1
                stopped = (
                    buf.mode == "early_stop"
                    and not done[i]
                    and (len(buf.frames) >= buf.stop_at or float(info["progress"][i]) >= buf.stop_progress)
                )
                finished = (  # the task was done stop_after_success frames ago: the recording ends here
                    cfg.stop_after_success is not None
                    and buf.mode != "early_stop"
                    and not done[i]
                    and buf.first_success is not None
                    and len(buf.frames) - 1 - buf.first_success >= cfg.stop_after_success
                )
                rows["dones"].append(int(done[i] or stopped or finished))
                if not (done[i] or stopped or finished):
                    continue
                # finished: judged on its last frame's state (the task may have come undone meanwhile)
                success = bool(shown["success"][i]) if finished else bool(info["success"][i]) and not stopped
                if buf.mode == "early_stop" and success:  # finished before the cut: not the failure it must be
                    buffers[i] = new_buffer()  # the env already auto-reset; this slot starts over
                    continue
                if buf.mode == "expert" and success:
                    typical += 0.1 * (len(buf.frames) - typical)
                writer.add(buf.episode(cameras, success, f"sim:{cfg.task}:{buf.mode}", cfg.seed))
                written += 1
                successes += success
                bar.update(1)
                buffers[i] = new_buffer() if started < cfg.num_demos else None
                started += buffers[i] is not None
                if stopped or finished:
                    cut.append(i)
            obs = env.reset_envs(cut) if cut else next_obs
        path = writer.path
    env.close()
    return {"file": str(path), "episodes": written, "success_rate": successes / max(1, written), "cameras": cameras}
