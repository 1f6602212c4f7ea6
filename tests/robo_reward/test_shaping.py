"""Reward shaping on the real simulator: PBRS is invisible to EPIC with the learner's γ and visible with another
γ or as direct progress reward; the wrapper's rewards are the formula on its potentials, Φ(terminal) = 0 while a
truncation keeps γΦ(s'); a reward-model potential sees the pre-reset frames; the distilled potential fits labelled
demos, refreshes online and round-trips; bad input fails in one line. Plus the reward-model Protocol."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import sim
from robo_reward.data import DemoFileError, DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.label import label
from robo_reward.models import CheckpointError, RewardModel, load_reward_model
from robo_reward.models.evaluate import evaluate
from robo_reward.models.metrics import epic_distance
from robo_reward.models.prm import PRMConfig, ProgressRewardModel
from robo_reward.models.prm_train import PRMTrainConfig, train_prm
from robo_reward.models.vlm import VLMConfig, VLMReward
from robo_reward.rl import RslRlVecEnv
from robo_reward.shaping import (
    DistilledPotential,
    ModelPotential,
    PrivilegedPotential,
    ShapedEnv,
    ShapingError,
    build_potential,
    direct_reward,
    shaped_reward,
)
from sim.gym_adapters import BatchedVectorEnv

CAMERAS = ("front", "wrist")
SUCCESS_RADIUS = 0.03  # m: the sparse reward below is "the cube is within 3 cm of the goal", read from obs


SCALE = 10.0  # conf/shaping/pbrs.yaml's k


def _success(obs: torch.Tensor) -> torch.Tensor:
    """1 where the cube is on the goal: the last 3 obs entries are goal - cube (table plane: the first two)."""
    return (obs[:, -3:-1].norm(dim=1) < SUCCESS_RADIUS).float()


def _sparse(s: torch.Tensor, a: torch.Tensor, s_next: torch.Tensor) -> torch.Tensor:
    return _success(s_next)


def _shaped(phi, gamma: float):
    """The sparse reward shaped with Φ = ``phi(obs)``, success terminal: Φ(terminal) = 0 at both ends."""

    def reward(s, a, s_next):
        terminal, terminal_next = _success(s).bool(), _success(s_next).bool()
        return shaped_reward(_sparse(s, a, s_next), phi(s) * ~terminal, phi(s_next), terminal_next, gamma, SCALE)

    return reward


def _direct(phi):
    return lambda s, a, s_next: direct_reward(_sparse(s, a, s_next), phi(s_next), SCALE)


@pytest.fixture(scope="module")
def transitions():
    """(obs, act, next_obs) from push_cube: random actions in half the envs, a noisy expert in the other half
    (random actions alone never reach the goal, and a sparse reward that is always 0 has nothing to correlate)."""
    gen = torch.Generator().manual_seed(0)
    with sim.make("push_cube", num_envs=32, seed=0) as env:
        expert = torch.arange(env.num_envs)[:, None] < env.num_envs // 2
        obs, rows = env.observation.clone(), []
        for _ in range(100):
            noisy = (env.expert(obs) + 0.3 * torch.randn(env.num_envs, env.act_dim, generator=gen)).clamp(-1, 1)
            act = torch.where(expert, noisy, torch.rand(env.num_envs, env.act_dim, generator=gen) * 2 - 1)
            next_obs, _, _, _, info = env.step(act)
            rows.append((obs, act, info["final_obs"].clone()))
            obs = next_obs.clone()
    return tuple(torch.cat(part) for part in zip(*rows, strict=True))


@pytest.fixture(scope="module")
def demos(tmp_path_factory):
    """8 push_cube demos at 32 px, labelled under /labels/prm by a tiny PRM trained on them for 150 steps."""
    root = tmp_path_factory.mktemp("shaping")
    path = root / "demos.h5"
    record(RecordConfig(task="push_cube", num_demos=8, out=path, cameras=CAMERAS, res=32, num_envs=8, seed=0,
                        progress_bar=False))  # fmt: skip
    threads = torch.get_num_threads()
    model_cfg = {"cameras": list(CAMERAS), "channels": [4, 8], "embed_dim": 16}
    train_cfg = PRMTrainConfig(steps=150, batch_size=16, pairs=4, lr=5e-3, torch_threads=1, save_every=10**6)
    prm, _ = train_prm([path], root / "prm", model_cfg, train_cfg, log=False)
    torch.set_num_threads(threads)
    label(path, prm, "prm", progress_bar=False, lanes=1)
    return path, prm


@pytest.fixture(scope="module")
def distilled(demos):
    path, _ = demos
    potential = DistilledPotential(sim.TASKS["push_cube"].obs_dim, hidden=(64, 64))
    return potential, potential.fit_from_demos([path], "prm", steps=300)


@pytest.fixture(scope="module")
def prm64(tmp_path_factory):
    """A tiny randomly initialised PRM for the front and wrist cameras at 64 px, saved."""
    torch.manual_seed(0)
    instruction = sim.TASKS["push_cube"].instruction
    model = ProgressRewardModel(PRMConfig(cameras=list(CAMERAS), instructions=[instruction], channels=[4, 8],
                                          embed_dim=16)).eval()  # fmt: skip
    folder = tmp_path_factory.mktemp("prm64")
    model.save(folder)
    return model, folder


def _random_mlp_potential(obs: torch.Tensor):
    torch.manual_seed(1)
    mean, std = obs.mean(0), obs.std(0).clamp_min(1e-3)
    mlp = torch.nn.Sequential(torch.nn.Linear(obs.shape[1], 64), torch.nn.Tanh(), torch.nn.Linear(64, 1))

    @torch.no_grad()
    def phi(x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(2 * mlp((x - mean) / std).squeeze(-1))

    return phi


def test_epic_sees_through_pbrs_with_the_learners_gamma_only(transitions):
    obs, act, next_obs = transitions
    assert _success(next_obs).sum() >= 10, "the coverage needs some successes"
    phi = _random_mlp_potential(torch.cat([obs, next_obs]))
    distance = {
        name: epic_distance(_sparse, reward, obs, act, next_obs, gamma=0.99, samples=16)
        for name, reward in (("pbrs", _shaped(phi, 0.99)), ("gamma 0.9", _shaped(phi, 0.9)), ("direct", _direct(phi)))
    }
    print(f"EPIC to the sparse reward, random-MLP potential: {distance}")
    assert distance["pbrs"] < 0.01
    assert distance["gamma 0.9"] > 0.03 and distance["direct"] > 0.2


def test_epic_with_the_distilled_potential(transitions, distilled):
    obs, act, next_obs = transitions
    potential, _ = distilled
    matched = epic_distance(_sparse, _shaped(potential.phi, 0.99), obs, act, next_obs, gamma=0.99, samples=16)
    mismatched = epic_distance(_sparse, _shaped(potential.phi, 0.9), obs, act, next_obs, gamma=0.99, samples=16)
    direct = epic_distance(_sparse, _direct(potential.phi), obs, act, next_obs, gamma=0.99, samples=16)
    print(f"EPIC, distilled potential: pbrs {matched:.2e}, gamma 0.9 {mismatched:.3f}, direct {direct:.3f}")
    assert matched < 0.01 and mismatched > 0.02 and direct > 0.1


class _ScriptedEnv:
    """Three envs, one step: env 0 goes on, env 1 reaches a terminal state, env 2 hits the time limit; 1 and 2
    are then auto-reset to new start states. Progress is the privileged potential."""

    num_envs, obs_dim, act_dim, device = 3, 1, 1, torch.device("cpu")

    def __init__(self) -> None:
        self.progress = torch.tensor([0.2, 0.4, 0.6])

    def privileged(self) -> dict[str, torch.Tensor]:
        return {"progress": self.progress.clone()}

    def step(self, action):
        reached = torch.tensor([0.3, 0.9, 0.7])  # the states the step reached, before the auto-reset
        self.progress = torch.tensor([0.3, 0.05, 0.1])
        info = {"progress": reached, "reward_terms": {"own": torch.full((3,), 7.0)}}
        return (
            torch.zeros(3, 1),
            torch.ones(3),
            torch.tensor([False, True, False]),
            torch.tensor([False, False, True]),
            info,
        )


def test_terminal_potential_is_zero_and_truncation_keeps_gamma_phi():
    shaped = ShapedEnv(_ScriptedEnv(), PrivilegedPotential(), mode="pbrs", gamma=0.9, learner_gamma=0.9, scale=2.0)
    _, reward, _, _, info = shaped.step(torch.zeros(3, 1))
    expected = 1.0 + 2.0 * torch.tensor([0.9 * 0.3 - 0.2, 0.0 - 0.4, 0.9 * 0.7 - 0.6])
    assert torch.allclose(reward, expected)
    terms = info["reward_terms"]
    assert torch.equal(terms["own"], torch.full((3,), 7.0)) and torch.equal(terms["task"], torch.ones(3))
    assert torch.allclose(terms["potential"], torch.tensor([0.3, 0.0, 0.7]))
    assert torch.allclose(terms["shaping"], expected - 1.0)
    assert torch.allclose(shaped.phi, torch.tensor([0.3, 0.05, 0.1]))  # Φ of the new start states
    direct = ShapedEnv(_ScriptedEnv(), PrivilegedPotential(), mode="direct", gamma=0.5, learner_gamma=0.99, scale=2.0)
    assert torch.allclose(direct.step(torch.zeros(3, 1))[1], 1.0 + 2.0 * torch.tensor([0.3, 0.9, 0.7]))


def test_shaped_rewards_are_the_formula_on_a_real_rollout():
    gamma, scale = 0.97, 3.0
    env = sim.make("push_cube", num_envs=16, seed=1, config={"max_episode_steps": 60, "terminate_on_success": True})
    with ShapedEnv(env, PrivilegedPotential(), mode="pbrs", gamma=gamma, learner_gamma=gamma, scale=scale) as shaped:
        assert torch.equal(shaped.phi, env.privileged()["progress"])
        ended = {"terminated": 0, "truncated": 0}
        for _ in range(90):
            phi = shaped.phi.clone()
            _, reward, terminated, truncated, info = shaped.step(shaped.expert())
            done = terminated | truncated
            phi_next = torch.where(done, info["progress"], env.privileged()["progress"])
            task = info["reward_terms"]["task"]
            assert torch.allclose(reward, shaped_reward(task, phi, phi_next, terminated, gamma, scale), atol=1e-6)
            assert torch.allclose(reward[terminated], task[terminated] - scale * phi[terminated], atol=1e-6)
            assert torch.equal(shaped.phi, env.privileged()["progress"])
            assert set(info["reward_terms"]) >= {"task", "shaping", "potential", "success"}
            ended["terminated"] += int(terminated.sum())
            ended["truncated"] += int(truncated.sum())
        assert ended["terminated"] > 0 and ended["truncated"] > 0, ended


def test_rsl_rl_and_gymnasium_faces_over_the_shaped_env():
    env = sim.make("push_cube", num_envs=4, seed=0)
    vec = RslRlVecEnv(ShapedEnv(env, PrivilegedPotential(), mode="pbrs", gamma=0.99, learner_gamma=0.99))
    vec.episode_length_buf = torch.tensor([0, 5, 10, 15])
    assert env.episode_step.tolist() == [0, 5, 10, 15]
    obs, rewards, _, extras = vec.step(torch.zeros(4, env.act_dim))
    assert obs["policy"].shape == (4, env.obs_dim) and rewards.shape == (4,)
    assert {"/reward/task", "/reward/shaping", "/reward/potential"} <= set(extras["log"])
    vec.close()
    gym_vec = BatchedVectorEnv("push_cube", num_envs=2)
    gym_vec.env = ShapedEnv(gym_vec.env, PrivilegedPotential(), mode="direct", gamma=0.99, learner_gamma=0.99)
    _, reward, _, _, info = gym_vec.step(np.zeros((2, gym_vec.env.act_dim), np.float32))
    assert np.allclose(reward, info["reward_terms"]["task"] + info["reward_terms"]["potential"])
    gym_vec.close()


def test_model_potential_scores_the_pre_reset_frames(prm64):
    model, folder = prm64
    kwargs = {"num_envs": 4, "seed": 3, "cameras": ("wrist", "side", "front"), "render_size": (64, 64)}
    env = sim.make("push_cube", config={"max_episode_steps": 2}, **kwargs)
    twin = sim.make("push_cube", **kwargs)  # the same episodes without the time limit: its states stay
    _, _, _, _, info = twin.step(torch.zeros(4, twin.act_dim))
    assert "final_frames" not in info and not twin.capture_final_frames  # off by default
    potential = build_potential("model", env, model_dir=folder)
    shaped = ShapedEnv(env, potential, mode="pbrs", gamma=0.99, learner_gamma=0.99)
    front_wrist = [2, 0]  # the model's camera order in the env's views
    assert torch.allclose(shaped.phi, model.progress(env.render()[:, front_wrist], env.instruction, list(CAMERAS)))
    shaped.step(torch.zeros(4, env.act_dim))
    action = torch.rand(4, env.act_dim, generator=torch.Generator().manual_seed(0)) * 2 - 1
    _, _, _, truncated, info = shaped.step(action)
    twin.step(action)
    assert truncated.all() and info["final_ids"].tolist() == [0, 1, 2, 3]
    reached = twin.render()
    assert info["final_frames"].dtype == torch.uint8 and torch.equal(info["final_frames"], reached)
    assert not torch.equal(env.render(), reached)  # the env itself has moved on to new episodes
    truth = model.progress(reached[:, front_wrist], env.instruction, list(CAMERAS))
    assert torch.allclose(potential.final(env, info, torch.tensor([3, 1])), truth[[3, 1]])
    assert torch.allclose(info["reward_terms"]["potential"], truth)
    env.close()
    twin.close()


def test_distilled_potential_fits_demos_refreshes_and_round_trips(demos, distilled, tmp_path):
    path, prm = demos
    potential, report = distilled
    print(f"distilled potential, held-out demo frames: {report}")
    with DemoReader(path) as reader:
        assert report["frames"] + report["heldout_frames"] == sum(reader.num_samples(i) for i in range(len(reader)))
    assert report["heldout_episodes"] == 2 and report["spearman"] > 0.3
    assert (potential.phi(potential._demo_obs) - potential._demo_target).abs().mean() < 0.1  # it fits its data
    env = sim.make("push_cube", num_envs=8, seed=5, cameras=CAMERAS, render_size=(32, 32))
    shaped = ShapedEnv(env, potential, mode="pbrs", gamma=0.99, learner_gamma=0.99,
                       refresh_every=3, refresh_model=prm, refresh_envs=4, refresh_steps=20)  # fmt: skip
    before = {k: v.clone() for k, v in potential.net.state_dict().items()}
    for _ in range(6):
        phi = shaped.phi.clone()
        with torch.inference_mode():  # as inside rsl-rl's rollout, where the refreshes happen
            _, reward, terminated, _, info = shaped.step(shaped.expert())
        terms = info["reward_terms"]
        assert torch.allclose(reward, shaped_reward(terms["task"], phi, terms["potential"], terminated, 0.99))
        assert torch.allclose(shaped.phi, potential.current(env))  # recomputed after each refresh
    assert potential._online.size == 8  # two refreshes of 4 states each
    assert any(not torch.equal(before[k], v) for k, v in potential.net.state_dict().items())
    # a refresh of every env: each state's observation is stored with the model's progress on its frames
    labels = prm.progress(env.render(), env.instruction)
    fit_before = (potential.phi(env.observation) - labels).abs().mean()
    potential.refresh(env, prm, num_envs=8, steps=200)
    stored_obs, stored = potential._online.obs[8:16], potential._online.target[8:16]
    match = (stored_obs[:, None] == env.observation[None]).all(-1).float().argmax(1)
    assert sorted(match.tolist()) == list(range(8)) and torch.allclose(stored, labels[match], atol=1e-5)
    assert (potential.phi(env.observation) - labels).abs().mean() < fit_before
    potential.save(tmp_path / "phi")
    again = DistilledPotential.load(tmp_path / "phi")
    assert torch.equal(again.phi(env.observation), potential.phi(env.observation))
    assert again.fit_report == report and again.config.instruction == env.instruction
    metrics = evaluate(prm, path)  # eval reads the model through the Protocol
    assert metrics["episodes"] == 8 and metrics["cameras"] == list(CAMERAS)
    env.close()


def test_reward_models_implement_the_protocol(prm64):
    model, _ = prm64
    tiny_clip = {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 64, "patch_size": 8, "head_width": 32},
        "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 1, "layers": 1},
    }
    torch.manual_seed(0)
    vlm = VLMReward(VLMConfig(model_cfg=tiny_clip, cameras=["front"])).eval()
    for reward_model in (model, vlm):
        assert isinstance(reward_model, RewardModel)
    assert (model.cameras, model.image_size, model.resizes) == (list(CAMERAS), 64, False)
    assert (vlm.cameras, vlm.image_size, vlm.resizes) == (["front"], 32, True)
    frames = torch.randint(0, 255, (5, 1, 48, 48, 3), dtype=torch.uint8)
    out = vlm.predict(frames, "push the cube")
    assert out["success"].shape == (5,) and ((out["success"] >= 0) & (out["success"] <= 1)).all()
    assert not torch.allclose(out["success"], out["progress"])  # its own estimate, not a copy


def test_bad_input_fails_in_one_line(tmp_path, prm64, demos):
    _, folder = prm64
    path, _ = demos
    env = sim.make("push_cube", num_envs=2, cameras=("front",), render_size=(64, 64))
    small = sim.make("push_cube", num_envs=2, cameras=CAMERAS, render_size=(32, 32))
    trained_on = rf"reward model {re.escape(str(folder))} was trained on cameras \['front', 'wrist'\]; the env"
    gamma = r"^shaping gamma 0.9 != the learner's gamma 0.99: PBRS is policy-invariant only with the learner's gamma$"
    cases = [
        (CheckpointError, "no such reward-model folder", lambda: load_reward_model(tmp_path / "missing")),
        (CheckpointError, "weights.safetensors: missing", lambda: load_reward_model(tmp_path)),
        (
            CheckpointError,
            trained_on + r" renders \['front'\]",
            lambda: build_potential("model", env, model_dir=folder),
        ),
        (
            ShapingError,
            "takes 64x64 frames; the env renders 32x32",
            lambda: build_potential("model", small, model_dir=folder),
        ),
        (
            ShapingError,
            gamma,
            lambda: ShapedEnv(env, PrivilegedPotential(), mode="pbrs", gamma=0.9, learner_gamma=0.99),
        ),
        (
            DemoFileError,
            rf"{re.escape(str(path))}: demo_0: /labels/nope/demo_0/progress: missing",
            lambda: build_potential("distilled", env, demos=[path], label_name="nope"),
        ),
        (
            ShapingError,
            "unknown potential 'oracle'; choose one of privileged, model, distilled",
            lambda: build_potential("oracle", env),
        ),
        (ShapingError, "needs model_dir", lambda: build_potential("model", env)),
        (
            ShapingError,
            "refreshable potential",
            lambda: ShapedEnv(env, PrivilegedPotential(), mode="pbrs", gamma=0.9, learner_gamma=0.9, refresh_every=5),
        ),
        (ValueError, "no embedding for instruction", lambda: ModelPotential(prm64[0], "open the drawer")),
    ]
    for error, message, call in cases:
        with pytest.raises(error, match=message) as caught:
            call()
        assert "\n" not in str(caught.value), str(caught.value)
    env.close()
    small.close()
