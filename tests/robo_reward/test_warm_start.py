"""The demonstration warm start of robo-train: cloning, the critic-only start, the held normaliser, bad input."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

import sim
from robo_reward.data.record import RecordConfig, record
from robo_reward.rl import RslRlVecEnv
from robo_reward.rl.warm_start import HeldActor, WarmStartConfig, clone_actor, demo_pairs
from robo_reward.train import Runner, train

CONF = Path(__file__).resolve().parents[2] / "conf"
COMMON = ("task=reach", "reward=sparse", "shaping=pbrs", "num_envs=32", "eval_video.steps=0", "progress_bar=false")


@pytest.fixture(scope="module")
def reach_demos(tmp_path_factory) -> Path:
    """48 reach demos by the scripted expert with action noise 0.3 (one 16 px camera: the frames are not used)."""
    path = tmp_path_factory.mktemp("demos") / "reach.h5"
    record(RecordConfig(task="reach", num_demos=48, out=path, cameras=("front",), res=16, noise=0.3, seed=3,
                        progress_bar=False))  # fmt: skip
    return path


def compose_train(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        return compose("train", overrides=list(overrides))


def success(rows: list[dict]) -> float:
    episodes = sum(row["episodes"] for row in rows)
    assert episodes > 0
    return sum(row["successes"] for row in rows) / episodes


def test_warm_start_clones_the_demos_before_ppo(tmp_path, reach_demos):
    """Sparse + PBRS on reach, 4 iterations: from scratch the first episodes almost never succeed; cloned
    from 48 noisy demos, the critic-only iterations already do (measured 0.00 vs 0.65)."""
    cold = train(compose_train(*COMMON, "iterations=4"), tmp_path / "cold")
    warm_overrides = (f"warm_start.demos=[{reach_demos}]", "warm_start.critic_iterations=4", "warm_start.steps=1500")
    warm = train(compose_train(*COMMON, "iterations=4", *warm_overrides), tmp_path / "warm")
    report = warm["warm_start"]
    print(f"reach: success in 4 iterations from scratch {success(cold['history']):.2f}, "
          f"warm-started {success(warm['history']):.2f}; clone {report}")  # fmt: skip
    assert cold["warm_start"] is None
    assert report["pairs"] > 500 and report["heldout_mse"] < 0.5 * report["heldout_mse_before"]
    assert success(cold["history"]) < 0.2
    assert success(warm["history"]) >= max(0.5, success(cold["history"]) + 0.4)


def test_held_actor_trains_the_critic_alone_and_the_normaliser_stays(reach_demos):
    env = sim.make("reach", num_envs=16, seed=0)
    cfg = compose_train("task=reach")
    train_cfg = OmegaConf.to_container(cfg.algo, resolve=True)
    with contextlib.redirect_stdout(io.StringIO()):
        runner = Runner(RslRlVecEnv(env), train_cfg, log_dir=None, device="cpu")
    try:
        actor, critic = runner.alg.actor, runner.alg.critic
        obs, actions = demo_pairs([reach_demos], "reach", env.obs_dim, env.act_dim)
        clone_actor(actor, obs, actions, WarmStartConfig(demos=[], steps=50, std=0.2))
        assert torch.allclose(actor.distribution.std_param, torch.full((env.act_dim,), 0.2))

        def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
            return {key: value.clone() for key, value in module.state_dict().items()}

        cloned, critic_before = snapshot(actor), snapshot(critic)
        lr = runner.alg.learning_rate
        with contextlib.redirect_stdout(io.StringIO()), HeldActor(runner.alg):
            runner.learn(num_learning_iterations=2)
        held = snapshot(actor)
        assert all(torch.equal(cloned[key], held[key]) for key in cloned), "the held actor moved"
        assert any(not torch.equal(critic_before[key], value) for key, value in snapshot(critic).items())
        assert runner.alg.learning_rate == lr and all(g["lr"] == lr for g in runner.alg.optimizer.param_groups)
        assert all(p.requires_grad for p in actor.parameters())

        with contextlib.redirect_stdout(io.StringIO()):
            runner.learn(num_learning_iterations=2)
        after = snapshot(actor)
        assert any(not torch.equal(cloned[key], after[key]) for key in cloned if key.startswith("mlp."))
        for key in cloned:  # PPO trains the actor now, but its input normalisation stays the demos'
            if key.startswith("obs_normalizer."):
                assert torch.equal(cloned[key], after[key]), key
    finally:
        env.close()


def test_resumed_warm_started_run_keeps_the_normaliser_held(tmp_path, reach_demos):
    run = tmp_path / "run"
    overrides = [*COMMON, "chunk_iterations=1", "keep_checkpoints=10", f"warm_start.demos=[{reach_demos}]",
                 "warm_start.critic_iterations=1", "warm_start.steps=200"]  # fmt: skip
    train(compose_train(*overrides, "iterations=2"), run)
    summary = train(compose_train(*overrides, "iterations=4", f"resume={run}"), run)
    assert summary["iterations"] == 4 and summary["warm_start"]["steps"] == 200  # the clone's report survives

    def normaliser(name: str) -> dict[str, torch.Tensor]:
        actor = torch.load(run / name, weights_only=True)["actor_state_dict"]
        return {key: value for key, value in actor.items() if key.startswith("obs_normalizer.")}

    first, last = normaliser("model_1.pt"), normaliser("model_final.pt")
    assert first and all(torch.equal(first[key], last[key]) for key in first)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["warm_start.demos=[/nonexistent/demos.h5]"], "warm_start.demos: /nonexistent/demos.h5: no such file"),
        (["warm_start.demos=[DEMOS]", "warm_start.std=0"], "warm_start.std=0: must be a positive number"),
        (["warm_start.demos=[DEMOS]", "warm_start.critic_iterations=-1"], "warm_start.critic_iterations=-1"),
        (["warm_start.demos=[DEMOS]", "task=push_cube"], "demos of task 'reach', not 'push_cube'"),
    ],
)
def test_bad_warm_start_input_is_one_line_and_writes_nothing(tmp_path, reach_demos, overrides, expected):
    overrides = [o.replace("DEMOS", str(reach_demos)) for o in overrides]
    cfg = compose_train(*COMMON, "iterations=1", *overrides)
    with pytest.raises(ValueError) as error:
        train(cfg, tmp_path / "run")
    message = str(error.value)
    assert expected in message and "\n" not in message, message
    assert not (tmp_path / "run").exists()
