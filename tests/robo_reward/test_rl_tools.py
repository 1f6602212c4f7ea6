"""The pieces around PPO: safe resume, learning-curve PNGs, eval videos, the reward-hacking watch."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image
from rsl_rl.runners import OnPolicyRunner

import sim
from robo_reward.rl import EpisodeLog, RslRlVecEnv
from robo_reward.rl.checkpoint import (
    STATE_FILE,
    ResumeError,
    TrainState,
    capture_torch_rng,
    latest_checkpoint,
    load_runner_checkpoint,
    read_checkpoint,
    resume,
    save_runner_checkpoint,
)
from robo_reward.rl.curves import plot_comparison, plot_learning_curves
from robo_reward.rl.eval_video import STRIP_PX, record_eval_video
from robo_reward.rl.watch import RewardHackingWatch

PPO_CONF = Path(__file__).resolve().parents[2] / "conf" / "algo" / "ppo.yaml"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# -- checkpoints --------------------------------------------------------------------------------
def make_runner(seed: int, hidden: list[int] | None = None) -> OnPolicyRunner:
    """A small real PPO runner on reach with 8 envs (no log dir: rsl-rl writes no files of its own)."""
    torch.manual_seed(seed)
    cfg = OmegaConf.to_container(OmegaConf.load(PPO_CONF), resolve=True)
    cfg.update(num_steps_per_env=8)
    cfg["algorithm"].update(num_learning_epochs=1, num_mini_batches=2)
    for net in ("actor", "critic"):
        cfg[net]["hidden_dims"] = hidden or [32, 32]
    vec = RslRlVecEnv(sim.make("reach", num_envs=8, seed=seed, num_threads=1))
    return OnPolicyRunner(vec, cfg, log_dir=None, device="cpu")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[OnPolicyRunner, Path]:
    """A runner trained one iteration and its checkpoint ``model_1.pt``, saved atomically."""
    runner = make_runner(seed=0)
    runner.learn(1)
    runner.current_learning_iteration = 1  # the trainer's count of iterations done
    path = tmp_path_factory.mktemp("run") / "model_1.pt"
    save_runner_checkpoint(runner, path, infos={"config": {"task": "reach"}, "note": None})
    yield runner, path
    runner.env.close()


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_checkpoint_round_trip_restores_networks_normaliser_optimizer_and_iteration(trained):
    runner, path = trained
    fresh = make_runner(seed=1)
    try:
        actor = runner.alg.get_policy().state_dict()
        normaliser = [key for key in actor if "obs_normalizer" in key]
        assert normaliser, "the actor has no observation normaliser to restore"
        fresh_actor = fresh.alg.get_policy().state_dict()
        assert not torch.equal(fresh_actor[normaliser[0]], actor[normaliser[0]])  # the test can fail

        assert load_runner_checkpoint(fresh, path) == 1
        assert fresh.current_learning_iteration == 1
        assert_same_tensors(fresh.alg.get_policy().state_dict(), actor)
        assert_same_tensors(fresh.alg._raw_critic.state_dict(), runner.alg._raw_critic.state_dict())
        optim, fresh_optim = runner.alg.optimizer.state_dict(), fresh.alg.optimizer.state_dict()
        assert optim["param_groups"] == fresh_optim["param_groups"]
        for k, state in optim["state"].items():
            assert_same_tensors(state, fresh_optim["state"][k])
        assert read_checkpoint(path)["infos"] == {"config": {"task": "reach"}, "note": None}
        assert not list(path.parent.glob(".*.tmp")), "a temp file was left behind"
    finally:
        fresh.env.close()


def test_checkpoint_refuses_non_plain_infos_and_mismatched_networks(trained, tmp_path):
    runner, path = trained
    with pytest.raises(ValueError, match=r"infos\['config'\] is a DictConfig"):
        save_runner_checkpoint(runner, tmp_path / "model_2.pt", infos={"config": OmegaConf.create({"a": 1})})
    assert not list(tmp_path.iterdir())
    other = make_runner(seed=0, hidden=[16])
    try:
        with pytest.raises(ResumeError, match="does not fit this runner") as err:
            load_runner_checkpoint(other, path)
        assert "\n" not in str(err.value)
    finally:
        other.env.close()


class Evil:
    """Unpickling this creates the file ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_load_refuses_pickled_code_and_non_checkpoints_with_one_line(trained, tmp_path):
    runner, good = trained
    marker = tmp_path / "code_ran"
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"actor_state_dict": Evil(marker)}))
    zipped = tmp_path / "zipped.pt"
    torch.save({"actor_state_dict": Evil(marker), "iter": 3}, zipped)
    for path in (legacy, zipped):
        with pytest.raises(ResumeError, match=r"possibly pickled code .*refusing to load") as err:
            load_runner_checkpoint(runner, path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists(), "unpickling ran code"

    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:5000])
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    for path, message in [
        (tmp_path / "missing.pt", "missing"),
        (truncated, "not a torch checkpoint"),
        (plain, "not an rsl-rl checkpoint"),
    ]:
        with pytest.raises(ResumeError, match=message) as err:
            load_runner_checkpoint(runner, path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_kill_during_save_leaves_previous_checkpoint_valid(trained, tmp_path):
    runner, good = trained
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model_1.pt").write_bytes(good.read_bytes())
    real_save = torch.save

    def save_then_die(obj, path) -> None:  # half the bytes reach the disk, then the process is killed
        buffer = io.BytesIO()
        real_save(obj, buffer)
        data = buffer.getvalue()
        with open(path, "wb") as handle:
            handle.write(data[: len(data) // 2])
            handle.flush()
            os.fsync(handle.fileno())
        os.kill(os.getpid(), signal.SIGKILL)

    pid = os.fork()  # a real process killed mid-write, sharing this one's runner (no re-import)
    if pid == 0:
        try:
            torch.save = save_then_die
            save_runner_checkpoint(runner, run_dir / "model_2.pt")
        finally:
            os._exit(3)  # reached only if the kill did not happen
    deadline = time.monotonic() + 60
    while (status := os.waitpid(pid, os.WNOHANG)[1]) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"child status {status}"
    assert not (run_dir / "model_2.pt").exists()
    assert len(list(run_dir.glob(".model_2.pt.*.tmp"))) == 1, "the killed writer's temp file should remain"
    # rsl-rl's own learn() saves without a rename: a kill there leaves a truncated model_<it>.pt
    (run_dir / "model_3.pt").write_bytes(good.read_bytes()[:5000])

    assert latest_checkpoint(run_dir) == run_dir / "model_1.pt"
    fresh = make_runner(seed=2)
    try:
        assert load_runner_checkpoint(fresh, latest_checkpoint(run_dir)) == 1
        assert_same_tensors(fresh.alg.get_policy().state_dict(), runner.alg.get_policy().state_dict())
    finally:
        fresh.env.close()
    save_runner_checkpoint(runner, run_dir / "model_2.pt")  # the next writer clears the dead one's temp file
    assert not list(run_dir.glob(".*.tmp"))
    assert latest_checkpoint(run_dir) == run_dir / "model_2.pt"
    empty = tmp_path / "empty_run"
    empty.mkdir()
    with pytest.raises(ResumeError, match="no complete checkpoint"):
        latest_checkpoint(empty)


def history_rows(iterations: int, steps_per_iteration: int = 192) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    for it in range(iterations):
        episodes = int(rng.integers(0, 5))
        successes = int(rng.binomial(episodes, min(1.0, it / iterations))) if episodes else 0
        rows.append(
            {
                "iteration": it,
                "env_steps": (it + 1) * steps_per_iteration,
                "wall_s": 0.5 * (it + 1) + 0.01 * it**1.2,
                "episodes": episodes,
                "successes": successes,
                "success_rate": successes / episodes if episodes else None,
                "mean_return": float(it + rng.normal()) if episodes else None,
                "task_return": float(successes) if episodes else None,
            }
        )
    return rows


def test_train_state_round_trip_and_resume(trained, tmp_path):
    runner, good = trained
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    save_runner_checkpoint(runner, run_dir / "model_1.pt")  # iteration 1, then the state that goes with it
    episodes = EpisodeLog([5, 9], [1.5, -0.5], [5, 4], [True, False], {"task": [1.0, 0.0]})
    rng = capture_torch_rng()
    expected_draw = torch.rand(3)
    state = TrainState(iterations_done=1, env_steps=64, wall_s=1.25, history=history_rows(1), episodes=episodes,
                       torch_rng=rng)  # fmt: skip
    state.save(run_dir)
    assert not list(run_dir.glob(".*.tmp"))
    assert TrainState.load(run_dir, iteration=1) == state and state.checkpoint == "model_1.pt"

    newer = read_checkpoint(good)
    newer["iter"] = 2
    torch.save(newer, run_dir / "model_2.pt")  # a newer checkpoint written just before a kill, with no state
    torch.rand(5)  # move the generator on
    fresh = make_runner(seed=3)
    try:
        resumed = resume(fresh, run_dir)
        assert resumed == state and fresh.current_learning_iteration == 1
        assert torch.equal(torch.rand(3), expected_draw), "torch's RNG was not restored"
    finally:
        fresh.env.close()

    with pytest.raises(ResumeError, match="holds iteration 2"):
        TrainState.load(run_dir, iteration=2)
    raw = json.loads((run_dir / STATE_FILE).read_text())
    raw["iterations_done"] = 3
    (run_dir / STATE_FILE).write_text(json.dumps(raw))
    with pytest.raises(ResumeError, match="1 history rows for 3 iterations") as err:
        TrainState.load(run_dir)
    assert "\n" not in str(err.value)
    raw["iterations_done"], raw["episodes"]["term_sums"]["task"] = 1, [1.0]
    (run_dir / STATE_FILE).write_text(json.dumps(raw))
    with pytest.raises(ResumeError, match="different lengths"):
        TrainState.load(run_dir)
    with pytest.raises(ResumeError, match=f"{STATE_FILE}: missing"):
        TrainState.load(tmp_path)
    TrainState().save(tmp_path / "new_run")  # a run that has not trained yet: empty log, no reward terms
    assert TrainState.load(tmp_path / "new_run") == TrainState()


# -- curves -------------------------------------------------------------------------------------
def blue_pixels(path: Path) -> int:
    """Pixels close to matplotlib's C0 blue: the success curve."""
    image = np.asarray(Image.open(path).convert("RGB")).astype(int)
    return int((np.abs(image - [31, 119, 180]).sum(axis=2) < 40).sum())


def test_learning_curves_and_comparison_are_valid_pngs(tmp_path):
    history = history_rows(60)
    out = plot_learning_curves(history, tmp_path / "curves.png", "reach — test")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(out) as image:
        assert image.size[0] >= 800 and image.size[1] >= 600
    assert blue_pixels(out) > 500, "no success curve drawn"
    empty = plot_learning_curves(
        [{**row, "success_rate": None, "mean_return": None} for row in history], tmp_path / "empty.png", "nothing ended"
    )
    assert blue_pixels(empty) < blue_pixels(out) / 4

    runs = {(variant, seed): history_rows(40 + 5 * seed) for variant in ("dense", "prm") for seed in range(3)}
    comparison = plot_comparison(runs, tmp_path / "compare.png")
    assert comparison.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(comparison) as image:
        assert image.size[0] >= 800 and image.size[1] >= 400
    assert not list(tmp_path.glob(".*.tmp"))


# -- eval video ---------------------------------------------------------------------------------
def test_eval_video_tiles_every_camera_at_256_px_with_the_potential_curve(tmp_path):
    with sim.make("push_cube", num_envs=2, seed=0, render_size=(256, 256)) as env:
        result = record_eval_video(
            env, env.expert, lambda e: e.privileged()["progress"] * 0.5, tmp_path / "eval.mp4", steps=10
        )
        cameras = len(env.cameras)
    assert result["frames"] == 11 and 0.0 <= result["success_rate"] <= 1.0
    assert result["curve"].startswith("Φ")
    frames = iio.imread(tmp_path / "eval.mp4")
    assert frames.shape[0] == 11
    assert frames.shape[2] == cameras * 256 and frames.shape[1] > 2 * 256 + STRIP_PX // 2
    # the curve grows from frame to frame: more lit pixels in the strip at the end than at the start
    strip = slice(2 * 256 + 4, 2 * 256 + STRIP_PX - 4)
    assert (frames[-1, strip] > 100).sum() > (frames[0, strip] > 100).sum()


def test_eval_video_without_potential_draws_privileged_progress_and_upscales(tmp_path):
    with sim.make("reach", num_envs=3, seed=0, render_size=(64, 64)) as env:
        result = record_eval_video(env, env.expert, None, tmp_path / "eval.mp4", steps=3, envs_shown=1)
    assert result["frames"] == 4 and result["curve"].startswith("privileged progress")
    frames = iio.imread(tmp_path / "eval.mp4")
    assert frames.shape[1] > 256 and frames.shape[2] == 3 * 256


# -- reward-hacking watch -----------------------------------------------------------------------
def run_watch(shaped, success, task=None, gaps: int = 0) -> RewardHackingWatch:
    watch = RewardHackingWatch()
    for i, (ret, rate) in enumerate(zip(shaped, success, strict=True)):
        if gaps and i % gaps == 0:  # an iteration in which no episode ended
            watch.update((i + 1) * 1536, None, None, None)
        else:
            watch.update((i + 1) * 1536, ret, None if task is None else task[i], rate)
    return watch


def test_watch_flags_rising_return_with_flat_success():
    rng = np.random.default_rng(0)
    n = 60
    rising = np.linspace(5, 30, n) + rng.normal(0, 1, n)
    flat = np.clip(0.1 + rng.normal(0, 0.05, n), 0, 1)
    watch = run_watch(rising, flat, gaps=4)
    message = watch.check()
    assert message is not None and "\n" not in message and "shaped return rose" in message
    summary = watch.summary()
    assert summary["flagged"] and summary["first_iteration"] >= watch.window - 1
    assert json.loads(json.dumps(summary)) == summary  # plain data for train_summary.json

    falling = np.clip(np.linspace(0.4, 0.1, n) + rng.normal(0, 0.05, n), 0, 1)
    assert run_watch(rising, falling).summary()["flagged"]


def test_watch_stays_quiet_when_success_or_task_return_rise_or_all_is_noise():
    rng = np.random.default_rng(1)
    n = 60
    rising = np.linspace(5, 30, n) + rng.normal(0, 1, n)
    learning = np.clip(np.linspace(0.0, 0.9, n) + rng.normal(0, 0.05, n), 0, 1)
    assert not run_watch(rising, learning).summary()["flagged"]
    flat = np.clip(0.1 + rng.normal(0, 0.05, n), 0, 1)
    assert not run_watch(rising, flat, task=np.linspace(-20, -5, n) + rng.normal(0, 0.5, n)).summary()["flagged"]
    high = np.clip(0.8 + rng.normal(0, 0.05, n), 0, 1)
    assert not run_watch(rising, high).summary()["flagged"]  # success already high: not hacking
    for seed in range(20):
        noise = np.random.default_rng(100 + seed)
        watch = run_watch(10 + noise.normal(0, 3, 200), np.clip(0.2 + noise.normal(0, 0.15, 200), 0, 1), gaps=5)
        assert not watch.summary()["flagged"], f"noise flagged (seed {100 + seed}): {watch.summary()['message']}"
    assert run_watch([None] * 30, [None] * 30).check() is None
