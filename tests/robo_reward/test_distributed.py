"""``robo-train-reward`` under ``torchrun``: two CPU ranks (gloo) train the PRM like one process with the same
global batch, a killed rank stops the whole job with whole files only, and the rerun resumes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robo_reward.data.reader import DemoReader
from robo_reward.data.record import RecordConfig, record
from robo_reward.models import load_reward_model
from robo_reward.models.checkpoint import load_checkpoint
from robo_reward.models.prm import progress_loss, progress_targets

BIN = Path(sys.executable).parent
CAMERAS = ("front", "wrist")
TINY = ["reward.net.channels=[8,16]", "reward.net.embed_dim=16", "reward.train.batch_size=32", "reward.train.pairs=8",
        "reward.train.torch_threads=1", "reward.train.lr=3e-3", "hydra.run.dir=${out}"]  # fmt: skip


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ddp") / "reach.h5"
    record(RecordConfig(task="reach", num_demos=8, out=path, cameras=CAMERAS, res=32, num_envs=8, seed=0,
                        failure_rate=0.25, progress_bar=False))  # fmt: skip
    return path


def torchrun(args: list[str], cwd: Path, module: str = "robo_reward.train_reward", **popen) -> subprocess.Popen:
    return subprocess.Popen([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", module, *args],
                            cwd=cwd, text=True, **popen)  # fmt: skip


def data_loss(model_dir: Path, demos: Path) -> float:
    """The progress loss of a saved PRM over every frame of the successful demos (no augmentation)."""
    model = load_reward_model(model_dir)
    losses = []
    with DemoReader(demos) as reader, torch.no_grad():
        for i in (i for i in range(len(reader)) if reader.success(i)):
            frames = torch.from_numpy(reader.multiview(i, cameras=list(CAMERAS)))
            task = torch.zeros(len(frames), dtype=torch.long)
            logits = model.heads(model.embed(frames, task))["progress_logits"]
            target = torch.from_numpy(progress_targets(len(frames), reader.privileged(i, "stage"),
                                                       len(reader.stage_names)))  # fmt: skip
            losses.append(float(progress_loss(logits, target)))
    return float(np.mean(losses))


def test_two_ranks_train_like_one_process_with_the_same_global_batch(demos, tmp_path):
    # a constant rate: at 300 steps a decaying one lets this tiny model's loss fall only ~0.11 (measured), too
    # little to tell two learning runs from noise; the schedule is the same function of the step on every rank
    steps = ["reward.train.steps=300", "reward.train.save_every=100", "reward.train.augment.shift=0",
             "reward.train.lr_schedule=constant"]  # fmt: skip
    single = subprocess.run([str(BIN / "robo-train-reward"), f"data={demos}", f"out={tmp_path / 'one'}", *TINY,
                             *steps], cwd=tmp_path, capture_output=True, text=True, timeout=600)  # fmt: skip
    assert single.returncode == 0, single.stderr[-2000:]
    # stderr is a pipe: the progress bar is a few plain lines (every 30 s and the last), not one per step
    assert 1 <= single.stderr.count("train prm") <= 6, single.stderr[-3000:]
    ddp = torchrun([f"data={demos}", f"out={tmp_path / 'two'}", *TINY, *steps], tmp_path,
                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    out, err = ddp.communicate(timeout=600)
    assert ddp.returncode == 0, err[-3000:]
    one = json.loads((tmp_path / "one" / "train_summary.json").read_text())
    two = json.loads((tmp_path / "two" / "train_summary.json").read_text())
    assert (one["world_size"], two["world_size"]) == (1, 2)
    assert one["global_batch_size"] == two["global_batch_size"] == 32 and two["batch_size_per_rank"] == 16
    assert two["episodes"] == one["episodes"] == 8 and two["frames"] == one["frames"]  # the shards cover the data
    assert out.count("written to") == 1  # rank 0 alone reports (and writes)
    # both learn, and to the same extent: the loss over the data falls from the untrained model's alike
    torch.manual_seed(0)
    untrained = tmp_path / "untrained"
    subprocess.run([str(BIN / "robo-train-reward"), f"data={demos}", f"out={untrained}", *TINY,
                    "reward.train.steps=1", "reward.train.lr=1e-12"], cwd=tmp_path, check=True,
                   capture_output=True)  # fmt: skip
    start = data_loss(untrained, demos)
    fell_one, fell_two = (1 - data_loss(tmp_path / run, demos) / start for run in ("one", "two"))
    assert fell_one > 0.15 and fell_two > 0.15, (start, fell_one, fell_two)  # single process: ~0.3 (3.06 → 2.12)
    assert abs(fell_one - fell_two) < 0.15, (fell_one, fell_two)


def _rank_pids(parent: int) -> dict[int, int]:
    """{rank: pid} of the workers torchrun started (read from their environment)."""
    found = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            stat = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()
            if int(stat[1]) != parent:
                continue
            env = dict(item.split("=", 1) for item in environ.read_text().split("\0") if "=" in item)
        except (OSError, ValueError, IndexError):
            continue
        if "RANK" in env:
            found[int(env["RANK"])] = int(environ.parent.name)
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").is_file(), reason="finds the ranks through /proc")
def test_a_killed_rank_stops_the_job_cleanly_and_the_rerun_resumes(demos, tmp_path):
    out = tmp_path / "run"
    state = out / "train_state" / "config.json"
    job = torchrun([f"data={demos}", f"out={out}", *TINY, "reward.train.steps=100000", "reward.train.save_every=3"],
                   tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    deadline = time.time() + 300
    while not state.exists() and job.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    ranks = _rank_pids(job.pid)
    assert state.exists() and sorted(ranks) == [0, 1], job.poll()
    os.kill(ranks[1], signal.SIGKILL)
    _, err = job.communicate(timeout=120)  # torchrun stops the surviving rank and fails
    assert job.returncode != 0, err[-2000:]
    time.sleep(0.5)
    assert not any(Path(f"/proc/{pid}").exists() and "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
                   for pid in ranks.values()), "a rank outlived the job"  # fmt: skip
    assert not list(out.rglob("*.tmp")) and not (out / "weights.safetensors").exists()
    saved = load_checkpoint(out / "train_state")[1]
    assert saved["world_size"] == 2 and saved["step"] >= 3
    more = [f"reward.train.steps={saved['step'] + 6}", "reward.train.save_every=3"]
    rerun = torchrun([f"data={demos}", f"out={out}", *TINY, *more], tmp_path, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)  # fmt: skip
    err = rerun.communicate(timeout=600)[1]
    assert rerun.returncode == 0, err[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_step"] == saved["step"] and summary["steps"] == saved["step"] + 6
    # resuming with another number of ranks is refused in one line (the per-rank RNG streams would not match)
    single = subprocess.run([str(BIN / "robo-train-reward"), f"data={demos}", f"out={out}", *TINY,
                             f"reward.train.steps={saved['step'] + 9}"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=600)  # fmt: skip
    assert single.returncode == 2 and "resume with the same number of ranks" in single.stderr, single.stderr


@pytest.mark.parametrize(("prog", "module", "args", "needs"), [
    ("robo-train-reward", "robo_reward.train_reward", TINY[:-1], "out=DIR"),
    ("robo-train", "robo_reward.train", ["task=reach", "num_envs=8", "iterations=1"], "hydra.run.dir=DIR"),
])  # fmt: skip
def test_torchrun_without_a_shared_folder_is_refused_in_one_line_by_every_rank(demos, tmp_path, prog, module, args,
                                                                               needs):  # fmt: skip
    if prog == "robo-train-reward":
        args = [f"data={demos}", *args]
    job = torchrun(args, tmp_path, module, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = job.communicate(timeout=300)
    assert job.returncode != 0
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}:")]
    assert len(lines) == 2 and all(f"under torchrun give {needs}" in line for line in lines), err[-2000:]
    assert not any(tmp_path.iterdir())  # refused before Hydra made any rank's folder


def test_robo_train_hands_each_rank_its_gpu_and_seed_and_refuses_cpu_ranks(tmp_path):
    from omegaconf import OmegaConf

    from robo_reward.distributed import Ranks
    from robo_reward.train import TrainConfigError, multi_gpu

    cfg = OmegaConf.create({"device": "cuda", "seed": 7, "num_envs": 64})
    assert multi_gpu(cfg, Ranks()) is cfg  # one process: untouched
    second = multi_gpu(cfg, Ranks(rank=3, world_size=4, local_rank=1))
    assert (second.device, second.seed, second.num_envs) == ("cuda:1", 10, 64) and cfg.device == "cuda"
    with pytest.raises(TrainConfigError, match="needs device=cuda"):
        multi_gpu(OmegaConf.create({"device": "cpu", "seed": 0}), Ranks(rank=0, world_size=2))
    # the whole command on two CPU ranks: one line from each, nothing written
    job = subprocess.run([str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "robo_reward.train",
                          "task=reach", "iterations=1", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    lines = [line for line in job.stderr.splitlines() if line.startswith("robo-train:")]
    assert job.returncode != 0 and len(lines) == 2 and all("needs device=cuda" in x for x in lines), job.stderr[-2000:]
    assert not (tmp_path / "run").exists()
