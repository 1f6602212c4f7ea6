"""`robo-reward ensemble`: several PRMs saved as one model whose progress and success are their mean, which
labelling and evaluation take like any model; members that cannot be averaged are refused in one line."""

import json
import shutil

import numpy as np
import pytest
import torch

from robo_reward.cli import main as cli
from robo_reward.data.reader import DemoReader
from robo_reward.data.writer import DemoWriter, Episode
from robo_reward.label import label
from robo_reward.models import RewardModel, load
from robo_reward.models.ensemble import RewardEnsemble
from robo_reward.models.prm import PRMConfig, ProgressRewardModel

INSTRUCTION = "push the red cube onto the green goal"
CAMERAS = ["front", "wrist"]


def prm(seed: int, cameras=CAMERAS, size: int = 32) -> ProgressRewardModel:
    torch.manual_seed(seed)  # members differ as trained seeds do: their outputs are not equal
    return ProgressRewardModel(PRMConfig(cameras, [INSTRUCTION], image_size=size, channels=[8, 16], embed_dim=16))


@pytest.fixture
def members(tmp_path):
    folders = []
    for seed in range(3):
        folder = tmp_path / f"seed{seed}"
        prm(seed).save(folder)
        folders.append(folder)
    return folders


def frames(count: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, len(CAMERAS), size, size, 3), dtype=torch.uint8, generator=gen)


def test_the_ensemble_is_the_mean_of_its_members_and_round_trips(members, tmp_path, capsys):
    out = tmp_path / "ensemble"
    assert cli(["ensemble", *map(str, members), "--out", str(out)]) == 0
    assert "ensemble of 3 models" in capsys.readouterr().out
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "weights.safetensors"]  # no pickle anywhere
    ensemble = load(out)
    assert isinstance(ensemble, RewardModel) and ensemble.cameras == CAMERAS and ensemble.image_size == 32
    x = frames(20)
    singles = [load(folder).predict(x, INSTRUCTION) for folder in members]
    assert not torch.allclose(singles[0]["progress"], singles[1]["progress"])
    both = ensemble.predict(x, INSTRUCTION)
    for key in ("progress", "success"):
        mean = torch.stack([single[key] for single in singles]).mean(0)
        torch.testing.assert_close(both[key], mean, rtol=0, atol=1e-6)
    torch.testing.assert_close(ensemble.progress(x, INSTRUCTION), both["progress"])
    one_view = ensemble.predict(x[:, 1:], INSTRUCTION, cameras=["wrist"])["progress"]  # a subset, as members allow
    assert one_view.shape == (20,)
    with pytest.raises(ValueError, match="no embedding for instruction 'stack the blocks'"):
        ensemble.predict(x, "stack the blocks")
    again = tmp_path / "again"
    ensemble.save(again)
    torch.testing.assert_close(load(again).predict(x, INSTRUCTION)["progress"], both["progress"], rtol=0, atol=0)
    assert json.loads((out / "config.json").read_text())["name"] == "ensemble"


def test_labelling_with_an_ensemble_writes_its_mean_progress(members, tmp_path):
    ensemble = RewardEnsemble.from_folders(members)  # the Python API, as the CLI builds it
    path = tmp_path / "demos.h5"
    rng = np.random.default_rng(1)
    lengths = [7, 30, 12]
    with DemoWriter(path, cameras=CAMERAS, task="push_cube", instruction=INSTRUCTION, fps=20.0) as writer:
        for length in lengths:
            writer.add(Episode(
                frames={cam: rng.integers(0, 256, (length, 32, 32, 3), dtype=np.uint8) for cam in CAMERAS},
                state=np.zeros((length, 3), np.float32), actions=np.zeros((length, 2), np.float32),
                rewards=np.zeros(length, np.float32), dones=(np.arange(length) == length - 1).astype(np.uint8),
                success=True, source="test",
            ))  # fmt: skip
    label(path, ensemble, "ens", batch=16, progress_bar=False, lanes=2)
    with DemoReader(path) as reader:
        for index in range(len(reader)):
            expected = ensemble.predict(torch.from_numpy(reader.multiview(index)), INSTRUCTION)["progress"]
            np.testing.assert_allclose(reader.labels("ens", index), expected.numpy(), atol=1e-6)


def test_members_that_cannot_be_averaged_are_refused_in_one_line(members, tmp_path, capsys):
    other_cameras, other_size = tmp_path / "front_only", tmp_path / "size48"
    prm(7, cameras=["front"]).save(other_cameras)
    prm(8, size=48).save(other_size)
    out = tmp_path / "out"
    cases = [
        ([members[0], other_cameras], "member 1 takes cameras ['front'] at 32 px, member 0 cameras"),
        ([members[0], other_size], "member 1 takes cameras ['front', 'wrist'] at 48 px"),
        ([members[0]], "needs at least 2 members, got 1"),
        ([members[0], tmp_path / "nope"], "nope: no such reward-model folder"),
    ]
    for folders, message in cases:
        assert cli(["ensemble", *map(str, folders), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()
    vlm = tmp_path / "vlm"
    vlm.mkdir()
    (vlm / "config.json").write_text(json.dumps({"kind": "vlm"}))
    shutil.copyfile(members[0] / "weights.safetensors", vlm / "weights.safetensors")
    assert cli(["ensemble", str(members[0]), str(vlm), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "a 'vlm' model; an ensemble takes process reward models" in err[0], err
    assert not out.exists()


def test_bench_label_runs_an_ensemble(members, tmp_path, capsys):
    out = tmp_path / "ensemble"
    assert cli(["ensemble", *map(str, members), "--out", str(out)]) == 0
    capsys.readouterr()
    args = ["bench", "label", "--num-demos", "2", "--rounds", "1", "--batch", "32", "--model", str(out), "--json"]
    assert cli(args) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["images_per_frame"] == 2 and result["frames_per_s"] > 0
    assert result["parameters"] == 3 * sum(p.numel() for p in load(members[0]).parameters())
