"""Real ROS graphs for the robot tests, and the policy artifacts they deploy.

ROS 2: the processes run in a network namespace this fixture makes (``ip netns add``, loopback up) with
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``: discovery and traffic never leave it. ROS 1: a real
``rosmaster --core`` on 127.0.0.1 at a free port. Each process is ``python -m real.cli ...``: ROS 1 and
ROS 2 cannot share one Python process (their message packages have the same names).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from real.bench import free_port, write_mlp_artifact

REPO = Path(__file__).resolve().parents[2]
TRANSPORTS = ("ros2", "ros1")


class Graph:
    """Processes on one private ROS graph; everything started here is stopped at teardown."""

    def __init__(self, transport: str, tmp: Path) -> None:
        self.transport, self.tmp = transport, tmp
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
        self.prefix: list[str] = []
        self.processes: list[subprocess.Popen] = []
        self.netns: str | None = None
        if transport == "ros2":
            self.netns = f"rr-{os.getpid()}-{uuid.uuid4().hex[:6]}"
            made = subprocess.run(["ip", "netns", "add", self.netns], capture_output=True, text=True)
            if made.returncode != 0:
                pytest.skip(f"ROS 2 tests need a network namespace (root): {made.stderr.strip()}")
            subprocess.run(["ip", "-n", self.netns, "link", "set", "lo", "up"], check=True)
            self.prefix = ["ip", "netns", "exec", self.netns]
        else:
            port = free_port()
            self.env.update(ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1")
            self.master = self.start(["rosmaster", "--core", "-p", str(port), "-w", "1"], python=False)

    def start(self, args: list[str], python: bool = True) -> subprocess.Popen:
        command = [*self.prefix, *([sys.executable, "-m", "real.cli"] if python else []), *args]
        process = subprocess.Popen(command, env=self.env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)  # fmt: skip
        self.processes.append(process)
        return process

    def twin(self, *overrides: str, name: str = "twin") -> Twin:
        report = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}.json"
        process = self.start(["twin", f"robot={self.transport}", *overrides, "--report", str(report)])
        line = process.stdout.readline()  # "twin: robot ... Ctrl-C stops" once the node is up
        assert line.startswith("twin: robot"), process.stderr.read()
        return Twin(process, report)

    def deploy(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        process = self.start(["deploy", *args])
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err

    def close(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
        if self.netns:
            subprocess.run(["ip", "netns", "del", self.netns], check=False)


class Twin:
    """A running ``robo-reward twin``; :meth:`stop` ends it and returns its command audit."""

    def __init__(self, process: subprocess.Popen, report: Path) -> None:
        self.process, self.report = process, report

    def signal(self, number: int) -> float:
        self.process.send_signal(number)
        return time.monotonic()

    def stop(self) -> dict:
        self.process.send_signal(signal.SIGINT)
        self.process.communicate(timeout=15)
        assert self.process.returncode == 0
        return json.loads(self.report.read_text())


@pytest.fixture(params=TRANSPORTS)
def graph(request, tmp_path) -> Iterator[Graph]:
    graph = Graph(request.param, tmp_path)
    try:
        if request.param == "ros1":
            time.sleep(1.0)  # rosmaster's XML-RPC server comes up
        yield graph
    finally:
        graph.close()


@pytest.fixture(scope="session")
def reach_artifact(tmp_path_factory) -> Path:
    """A reach policy trained by robo-train (dense reward, ~25 s on 2 cores) and exported."""
    from robo_reward.export import export_policy

    run_dir = tmp_path_factory.mktemp("reach_run")
    cmd = [sys.executable, "-m", "robo_reward.train", "task=reach", "iterations=50", "num_envs=64", "seed=0",
           "eval_video.steps=0", "progress_bar=false", f"hydra.run.dir={run_dir}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=run_dir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"robo-train failed:\n{proc.stderr[-3000:]}"
    out = tmp_path_factory.mktemp("artifacts") / "reach"
    export_policy(run_dir, out)
    return out


def mlp_artifact(folder: Path, rate_hz: float = 20.0, scale: float = 0.05, **spec_changes) -> Path:
    """An untrained MLP artifact with reach's interface; ``spec_changes`` edit spec.json's top-level keys."""
    write_mlp_artifact(folder)
    spec = json.loads((folder / "spec.json").read_text())
    spec["control_rate_hz"] = rate_hz
    spec["action"]["scale"] = [scale] * 6 + [1.0]
    spec.update(spec_changes)
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder
