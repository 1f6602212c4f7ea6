"""backend="warp": MuJoCo Warp on warp's CPU device agrees with the CPU backend on the same seed and actions.

Skipped without the warp extra (``pip install -e '.[warp]'``). Marked ``slow``: the first run compiles
MuJoCo Warp's kernels (~2 min on a 2-core machine); warp caches them on disk, after which this file takes
well under a minute (run with ``-m slow``).

Tolerances: the CPU backend integrates in float64, MuJoCo Warp in float32 (relative resolution ~1e-7).
Over the first 10 control steps (100 substeps) the arm-only reach scene agrees to ~2e-6 in every
observation entry, so 2e-5 leaves 10x margin; in push_cube the cube settles onto the table in the first
steps and the float32 contact solve puts it ~2e-4 m (0.2 mm) elsewhere before both converge, so 1e-3
(1 mm, 2 % of the 5 cm success radius). A missed control upload, reset upload or substep moves joints by
0.05 rad or more per step — far outside either tolerance.
"""

import numpy as np
import pytest
import torch

import sim

STEPS = 10
OBS_TOL = {"reach": 2e-5, "push_cube": 1e-3}


def test_unknown_backend_lists_the_choices():
    with pytest.raises(ValueError, match=r"unknown backend 'jax'; available: cpu, warp"):
        sim.make("reach", backend="jax")


@pytest.fixture(scope="module")
def warp():
    pytest.importorskip("mujoco_warp")
    return pytest.importorskip("warp")


def _actions(env, steps, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(steps, env.num_envs, env.act_dim, generator=gen) * 2 - 1


def _assert_step_agrees(out_w, out_c, tol):
    obs_w, rew_w, term_w, trunc_w, info_w = out_w
    obs_c, rew_c, term_c, trunc_c, info_c = out_c
    torch.testing.assert_close(obs_w, obs_c, atol=tol, rtol=0)
    torch.testing.assert_close(rew_w, rew_c, atol=tol, rtol=0)
    assert torch.equal(term_w, term_c) and torch.equal(trunc_w, trunc_c)
    assert torch.equal(info_w["success"], info_c["success"])
    torch.testing.assert_close(info_w["progress"], info_c["progress"], atol=50 * tol, rtol=0)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["reach", "push_cube"])
def test_warp_agrees_with_cpu_on_the_first_steps(warp, task):
    tol = OBS_TOL[task]
    with sim.make(task, num_envs=4, seed=3, backend="warp") as env_w, sim.make(task, num_envs=4, seed=3) as env_c:
        torch.testing.assert_close(env_w.observation, env_c.observation, atol=1e-6, rtol=0)
        actions = _actions(env_c, STEPS + 3)
        for act in actions[:STEPS]:
            _assert_step_agrees(env_w.step(act), env_c.step(act), tol)
        # the scripted expert reads the host MjData (site frames, Jacobians): synced from the device on demand
        torch.testing.assert_close(env_w.expert(), env_c.expert(), atol=50 * tol, rtol=0)
        # a partial reset (what auto-reset does) reaches only the reset worlds, the others keep their state
        before = env_w.physics.qpos[[0, 3]].copy()
        obs_w, obs_c = env_w.reset_envs([1, 2]), env_c.reset_envs([1, 2])
        torch.testing.assert_close(obs_w, obs_c, atol=tol, rtol=0)
        np.testing.assert_array_equal(env_w.physics.qpos[[0, 3]], before)
        assert (env_w.episode_step == [STEPS, 0, 0, STEPS]).all()
        for act in actions[STEPS:]:
            _assert_step_agrees(env_w.step(act), env_c.step(act), tol)


@pytest.mark.slow
def test_warp_state_is_the_device_memory(warp):
    """On warp's CPU device the arrays the tasks read are the warp arrays themselves (no copies)."""
    with sim.make("reach", num_envs=3, seed=0, backend="warp") as env:
        phys = env.physics
        for name in ("qpos", "qvel", "site_xpos"):
            device_array = getattr(phys.wdata, name)
            assert getattr(phys, name).ctypes.data == device_array.ptr
            assert phys.tensors[name].data_ptr() == device_array.ptr  # torch through DLPack
        qpos_before = phys.tensors["qpos"].clone()
        env.step(torch.ones(3, env.act_dim))
        assert not torch.equal(phys.tensors["qpos"], qpos_before)  # the view follows the simulation
        np.testing.assert_array_equal(phys.tensors["qpos"].numpy(), phys.qpos)


@pytest.mark.slow
def test_warp_renders_the_device_state(warp):
    """Rendering stays on MuJoCo's CPU renderer, fed from the worlds' state."""
    kwargs = {"num_envs": 2, "seed": 1, "cameras": ["front"], "render_size": (32, 32)}
    with sim.make("reach", backend="warp", **kwargs) as env_w, sim.make("reach", **kwargs) as env_c:
        for act in _actions(env_c, 3):
            env_w.step(act)
            env_c.step(act)
        frames_w, frames_c = env_w.render(), env_c.render()
        assert frames_w.shape == (2, 1, 32, 32, 3)
        assert (frames_w.float() - frames_c.float()).abs().mean() < 1.0  # a few edge pixels at most


@pytest.mark.slow
def test_warp_refuses_domain_randomisation(warp):
    with pytest.raises(ValueError, match="not supported by backend 'warp'"):
        sim.make("reach", backend="warp", config={"randomize": {"enabled": True}})


@pytest.mark.slow
def test_bench_sim_backend_reports_warp_against_cpu(warp):
    from sim.bench import bench_sim_backend

    result = bench_sim_backend("reach", "warp", num_envs=2, steps=3, rounds=1)
    assert result["backend"] == "warp" and result["first_step_s"] > 0
    assert result["env_steps_per_s"] > 0 and result["cpu_env_steps_per_s"] > 0 and result["physics_steps_per_s"] > 0
    # one round: the ratio is that round's two rates divided (rounded as reported)
    assert abs(result["ratio_vs_cpu"] - result["env_steps_per_s"] / result["cpu_env_steps_per_s"]) < 0.01
