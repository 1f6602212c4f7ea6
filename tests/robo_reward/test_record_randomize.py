"""``robo-reward record --randomize``: randomised demos that carry each episode's draw and validate;
the randomisation ranges as Hydra overrides."""

import json
from pathlib import Path

import numpy as np
from hydra import compose, initialize_config_dir

import sim
from robo_reward import cli
from robo_reward.config import task_config
from robo_reward.data import DemoReader, validate
from robo_reward.data.record import RecordConfig, record

CONF = Path(__file__).resolve().parents[2] / "conf"


def test_record_randomize_stores_each_episodes_draw(tmp_path, capsys):
    path = tmp_path / "demos.h5"
    argv = ["record", "--task", "reach", "--num-demos", "6", "--num-envs", "3", "--out", str(path)]
    assert cli.main([*argv, "--cameras", "front", "--res", "16", "--seed", "1", "--randomize"]) == 0
    assert "wrote 6 episodes" in capsys.readouterr().out
    assert validate(path)["episodes"] == 6
    with DemoReader(path) as reader:
        assert reader.env_args["env_kwargs"]["config"]["randomize"]["enabled"] is True
        episodes = [reader.episode(index) for index in range(len(reader))]
    draws = [json.loads(episode.attrs["randomization"]) for episode in episodes]
    assert all(set(draw) == {"color", "light", "camera", "distractors", "physics"} for draw in draws)
    assert len({json.dumps(draw, sort_keys=True) for draw in draws}) == 6  # a new draw per episode
    # the draws are the env's own: those of the first episodes of a same-seed env are among them
    config = {"randomize": {"enabled": True}}
    with sim.make("reach", num_envs=3, seed=1, config=config, cameras=("front",), render_size=(16, 16)) as env:
        first = env.randomization()
    stored = {json.dumps(draw, sort_keys=True) for draw in draws}
    assert all(json.dumps(draw, sort_keys=True) in stored for draw in first)
    intensities = [draw["light"]["intensity"] for draw in draws]
    assert np.ptp(intensities) > 0.1
    # the stored draw is what the episode looked like: its first frames differ as the draws do
    firsts = np.stack([episode.frames["front"][0].astype(float) for episode in episodes])
    assert np.abs(firsts[0] - firsts[1:]).mean(axis=(1, 2, 3)).min() > 1


def test_record_without_randomize_stores_no_draw(tmp_path, capsys):
    path = tmp_path / "demos.h5"
    argv = ["record", "--task", "reach", "--num-demos", "2", "--num-envs", "2", "--out", str(path)]
    assert cli.main([*argv, "--cameras", "front", "--res", "16"]) == 0
    with DemoReader(path) as reader:
        assert reader.env_args["env_kwargs"]["config"]["randomize"]["enabled"] is False
        assert all("randomization" not in reader.episode(index).attrs for index in range(len(reader)))


def test_randomisation_on_through_the_task_config_also_stores_each_draw(tmp_path):
    # the pipeline and scripts turn it on in the task config (e.g. ranges beyond the defaults), not by the flag
    path = tmp_path / "demos.h5"
    config = {"randomize": {"enabled": True, "light": {"intensity": [0.45, 0.6]}}}
    record(RecordConfig(task="reach", num_demos=3, num_envs=3, out=path, cameras=("front",), res=16,
                        task_config=config, progress_bar=False))  # fmt: skip
    with DemoReader(path) as reader:
        draws = [json.loads(reader.episode(index).attrs["randomization"]) for index in range(len(reader))]
    assert len(draws) == 3 and all(0.45 <= draw["light"]["intensity"] <= 0.6 for draw in draws)


def test_randomisation_is_configured_by_hydra_overrides():
    overrides = ["task=push_cube", "task.randomize.enabled=true", "task.randomize.light.intensity=[0.4,0.5]"]
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose("train", overrides=overrides)
    with sim.make(cfg.task.name, num_envs=4, config=task_config(cfg.task), render_size=(16, 16)) as env:
        intensities = [draw["light"]["intensity"] for draw in env.randomization()]
    assert all(0.4 <= value <= 0.5 for value in intensities) and np.ptp(intensities) > 0
