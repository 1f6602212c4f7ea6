"""Every command fails the same way: a user's mistake is one line on stderr, exit code 2 and no file
created or changed; Ctrl-C is one line and exit 130 with nothing half-written; resuming another run is
refused; a killed ``label`` leaves no process behind and its rerun gives a clean run's labels."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

import sim
from robo_reward.data import DemoWriter, Episode
from robo_reward.data.record import RecordConfig, record

BIN = Path(sys.executable).parent
CAMERAS = ["front", "wrist"]


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> tuple[Path, Path]:
    """Two small reach demo files recorded with different seeds (other data, same layout)."""
    folder = tmp_path_factory.mktemp("demos")
    files = []
    for seed in (0, 1):
        path = folder / f"reach_{seed}.h5"
        record(RecordConfig(task="reach", num_demos=6, out=path, cameras=tuple(CAMERAS), res=32, num_envs=6,
                            seed=seed, failure_rate=0.3, progress_bar=False))  # fmt: skip
        files.append(path)
    return files[0], files[1]


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "MUJOCO_GL": "egl", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def call(app: str, argv: list[str]) -> int:
    """A command in this process (the console scripts are these functions): its exit code."""
    from robo_reward import cli, pipeline, train, train_reward

    main = {"robo-train": train.main, "robo-train-reward": train_reward.main, "robo-reward": cli.main}[app]
    if app == "robo-reward" and argv[:1] == ["pipeline"]:
        main, argv = pipeline.main, argv[1:]
    try:
        code = main(argv)
    except SystemExit as stop:
        code = stop.code
    return 0 if code is None else code


def bad_inputs(demo: Path, empty: Path, not_h5: Path) -> list[tuple[str, list[str], str]]:
    train, reward, cli = "robo-train", "robo-train-reward", "robo-reward"
    return [
        (train, ["iterations=abc"], "iterations=abc: expected an integer"),
        (train, ["task_reward=spars"], "task_reward=spars"),
        (train, ["num_envs=0"], "num_envs=0"),
        (train, ["physics_threads=abc"], "physics_threads=abc: must be a positive integer"),
        (train, ["max_wall_s=-1"], "max_wall_s=-1: must be a positive number"),
        (train, ["episodez=3"], "episodez: unknown key"),
        (train, ["task=pick"], "available: " + ", ".join(sorted(sim.TASKS))),
        (train, ["task.reward.plce=2"], "did you mean task.reward.place"),
        (train, ["reward=prm", "shaping=pbrs"], "needs a trained reward model"),
        (train, ["reward=prm", "shaping=pbrs", "reward.model=nope"], "reward.model=nope: no such folder"),
        (train, ["resume=nope"], "resume=nope: no such run folder"),
        (train, ["-m", "seed=0,x"], "seed=x: expected an integer"),
        (reward, ["data=nope.h5"], "data=nope.h5: no such file"),
        (reward, [], "data=FILE is required"),
        (reward, [f"data={not_h5}"], "not a readable HDF5 demo file"),
        (reward, [f"data={empty}"], "no demo episodes"),
        (reward, [f"data={demo}", "eval_data=nope.h5"], "eval_data=nope.h5: no such file"),
        (reward, [f"data={demo}", "reward=foo"], "reward=foo: unknown option"),
        (reward, [f"data={demo}", "reward=dense"], "cannot be trained here"),
        (reward, [f"data={demo}", "reward.train.steps=abc"], "expected an integer"),
        (cli, ["pipeline", "episodez=3"], "did you mean episodes"),
        (cli, ["pipeline", "res=0"], "res=0"),
        (cli, ["pipeline", "reward.heldout_stop_after_success=-2"], "reward.heldout_stop_after_success=-2"),
        (cli, ["pipeline", "policy.iterations=abc"], "policy.iterations=abc"),
        (cli, ["record", "--num-demos", "0", "--out", "x.h5"], "--num-demos 0"),
        (cli, ["record", "--failure-rate", "1.5", "--out", "x.h5"], "--failure-rate 1.5"),
        (cli, ["record", "--res", "0", "--out", "x.h5"], "--res 0"),
        (cli, ["record", "--stop-after-success", "-1", "--out", "x.h5"], "--stop-after-success -1"),
        (cli, ["record", "--num-demos", "1", "--out", "."], "is a folder"),
        (cli, ["record", "--task", "pick", "--out", "x.h5"], "unknown task"),
        (cli, ["validate", str(empty)], "no episodes"),
        (cli, ["label", "nope.h5", "--model", "nope"], "nope.h5: no such file"),
        (cli, ["label", str(demo), "--model", "nope"], "no such reward-model folder"),
        (cli, ["label", str(demo), "--model", "nope", "--lanes", "0"], "--lanes: expected an integer ≥ 1, got 0"),
        (cli, ["bogus"], "invalid choice"),
    ]


@pytest.fixture
def work(demos, tmp_path, monkeypatch) -> tuple[Path, Path, Path, Path]:
    """A working folder holding a demo file, a demo file with no episodes and a text file named .h5."""
    work = tmp_path / "work"
    work.mkdir()
    demo = work / "demo.h5"
    shutil.copyfile(demos[0], demo)
    empty, not_h5 = work / "empty.h5", work / "text.h5"
    with DemoWriter(empty, cameras=CAMERAS, task="reach", instruction="reach the target", fps=20.0):
        pass
    not_h5.write_text("not a demo file\n")
    monkeypatch.chdir(work)
    return work, demo, empty, not_h5


def test_every_bad_input_is_one_line_exit_2_and_writes_nothing(work, capsys):
    folder, demo, empty, not_h5 = work
    before = snapshot(folder)
    for app, argv, expected in bad_inputs(demo, empty, not_h5):
        code = call(app, argv)
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        name = " ".join([app, *argv])
        assert code == 2, (name, code, err[-2000:])
        assert len(lines) == 1 and expected in lines[0] and lines[0].startswith(app), (name, err)
        assert snapshot(folder) == before, (name, set(snapshot(folder)) ^ set(before))


def test_the_console_scripts_exit_2_with_one_line(work):
    folder = work[0]
    for args in (["robo-train", "iterations=abc"], ["robo-reward", "record", "--num-demos", "0", "--out", "x.h5"]):
        result = run([str(BIN / args[0]), *args[1:]], folder)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["demo.h5", "empty.h5", "text.h5"]


def test_reward_training_refuses_to_resume_on_other_data_and_continues_on_the_same(demos, tmp_path, capsys):
    out = tmp_path / "prm"
    base = [f"out={out}", "reward.net.channels=[8,16]", "reward.net.embed_dim=16", "reward.train.batch_size=16",
            "reward.train.save_every=5", "reward.train.torch_threads=1", f"hydra.run.dir={out}"]  # fmt: skip

    def train(*extra: str) -> tuple[int, str, str]:
        code = call("robo-train-reward", [*base, *extra])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert train(f"data={demos[0]}", "reward.train.steps=5")[0] == 0
    weights = (out / "weights.safetensors").read_bytes()
    code, _, err = train(f"data={demos[1]}", "reward.train.steps=10")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "data[0] differs" in err and "fresh=true" in err
    assert (out / "weights.safetensors").read_bytes() == weights  # the refused run changed nothing
    code, _, err = train(f"data={demos[0]}", "reward.train.steps=10", "reward.train.lr=0.5")
    assert code == 2 and "reward.train.lr" in err
    code, printed, _ = train(f"data={demos[0]}", "reward.train.steps=10")
    summary = json.loads(printed.strip().splitlines()[-1])
    assert code == 0 and summary["resumed_from_step"] == 5 and summary["steps"] == 10
    assert summary["model"] == str(out) and f"written to {out}" in printed
    code, printed, _ = train(f"data={demos[1]}", "reward.train.steps=5", "fresh=true")
    assert code == 0 and json.loads(printed.strip().splitlines()[-1])["resumed_from_step"] == 0


def _default_sigint() -> None:
    """In the child: Ctrl-C's default action. A test runner started in the background by a shell without
    job control has SIGINT ignored, and its children inherit that (Python then installs no handler)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_when(proc: subprocess.Popen, ready, timeout: float = 120) -> tuple[int, str]:
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "finished before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return proc.returncode, err


def test_ctrl_c_in_record_is_one_line_130_and_leaves_no_file(tmp_path):
    out = tmp_path / "demos.h5"
    proc = subprocess.Popen([str(BIN / "robo-reward"), "record", "--task", "reach", "--num-demos", "400",
                             "--res", "32", "--out", str(out)], cwd=tmp_path, stderr=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True, preexec_fn=_default_sigint)  # fmt: skip
    code, err = _interrupt_when(proc, lambda: any(tmp_path.glob(".demos.h5.*.tmp")))
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "record reach" not in line]
    assert code == 130 and lines == [lines[0]] and "interrupted" in lines[0], err[-2000:]
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_in_reward_training_is_one_line_130_and_keeps_only_whole_files(demos, tmp_path):
    out = tmp_path / "prm"
    state = out / "train_state" / "config.json"
    proc = subprocess.Popen([str(BIN / "robo-train-reward"), f"data={demos[0]}", f"out={out}",
                             "reward.train.steps=100000", "reward.train.save_every=2"], cwd=tmp_path,
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            preexec_fn=_default_sigint)  # fmt: skip
    code, err = _interrupt_when(proc, state.exists)
    lines = [line for line in err.replace("\r", "\n").splitlines() if line.strip() and "train prm" not in line]
    assert code == 130 and len(lines) == 1 and "interrupted; training state kept" in lines[0], err[-2000:]
    assert not list(out.rglob("*.tmp")) and not (out / "weights.safetensors").exists()
    assert json.loads(state.read_text())["step"] >= 2


def _forks(pid: int) -> list[int]:
    """Children of ``pid`` running its command line (forked lanes, not e.g. a short ``uname`` an import
    runs), from every ``/proc/<n>/stat``: ``.../task/*/children`` needs a kernel option not every machine has."""
    found = []
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return found
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, ...
            if int(fields[1]) == pid and (stat.parent / "cmdline").read_bytes() == cmdline:
                found.append(int(stat.parent.name))
        except (OSError, IndexError):
            continue
    return found


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "State:\tZ" not in status


def _big_demo_file(path: Path) -> None:
    rng = np.random.default_rng(0)
    with DemoWriter(path, cameras=CAMERAS, task="reach", instruction="reach the target", fps=20.0) as writer:
        for _ in range(60):
            frames = {cam: rng.integers(0, 255, (80, 64, 64, 3), dtype=np.uint8) for cam in CAMERAS}
            zeros = np.zeros((80, 2), np.float32)
            writer.add(Episode(frames=frames, state=zeros, actions=zeros, rewards=np.zeros(80, np.float32),
                               dones=(np.arange(80) == 79).astype(np.uint8), success=True, source="test"))


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process tree from /proc")
def test_sigkill_of_label_leaves_no_process_and_the_rerun_labels_like_a_clean_run(tmp_path):
    import torch

    from robo_reward.models.prm import PRMConfig, ProgressRewardModel

    torch.manual_seed(0)
    ProgressRewardModel(PRMConfig(cameras=CAMERAS, instructions=["reach the target"], image_size=64)).save(
        tmp_path / "model", extra={"name": "tiny"}
    )
    clean = tmp_path / "clean.h5"
    _big_demo_file(clean)
    orphans = []
    for k in range(3):  # a fresh copy each time: every run has the whole file to label, so it forks its lanes
        killed = tmp_path / f"killed_{k}.h5"
        shutil.copyfile(clean, killed)
        proc = subprocess.Popen([str(BIN / "robo-reward"), "label", str(killed), "--model", str(tmp_path / "model"),
                                 "--lanes", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.time() + 60
        while not _forks(proc.pid) and proc.poll() is None and time.time() < deadline:
            time.sleep(0.005)
        lanes = _forks(proc.pid)
        proc.kill()
        proc.wait()
        assert lanes, "the labeller finished or never forked a lane"
        orphans += lanes
    cmd = [str(BIN / "robo-reward"), "label", str(tmp_path / "killed_0.h5"), "--model", str(tmp_path / "model")]
    deadline = time.time() + 5
    while any(_alive(pid) for pid in orphans) and time.time() < deadline:
        time.sleep(0.05)
    assert not any(_alive(pid) for pid in orphans), orphans
    assert run(cmd, tmp_path, timeout=300).returncode == 0
    assert run([str(BIN / "robo-reward"), "label", str(clean), "--model", str(tmp_path / "model")],
               tmp_path, timeout=300).returncode == 0  # fmt: skip
    with h5py.File(clean, "r") as a, h5py.File(tmp_path / "killed_0.h5", "r") as b:
        assert list(a["labels"]) == ["tiny"]  # stored under the model's name, not its folder's
        for demo in a["labels/tiny"]:
            np.testing.assert_array_equal(a[f"labels/tiny/{demo}/progress"][()], b[f"labels/tiny/{demo}/progress"][()])
