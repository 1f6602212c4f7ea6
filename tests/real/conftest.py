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
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

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
            self.master = self.start(["rosmaster", "--core", "-p", str(port), "-w", "1"])

    def start(self, command: list[str]) -> subprocess.Popen:
        """Run ``command`` on this graph (ROS 2: inside the namespace)."""
        process = subprocess.Popen([*self.prefix, *command], env=self.env, cwd=REPO, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True)  # fmt: skip
        self.processes.append(process)
        return process

    def cli(self, *args: str) -> subprocess.Popen:
        """``python -m real.cli ARGS`` (deploy or twin) on this graph."""
        return self.start([sys.executable, "-m", "real.cli", *args])

    def robot(self, *overrides: str) -> list[str]:
        return [f"robot={self.transport}", "safety.keyboard_estop=false", *overrides]

    def twin(self, *overrides: str, name: str = "twin") -> Twin:
        report = self.tmp / f"{name}-{uuid.uuid4().hex[:6]}.json"
        process = self.cli("twin", f"robot={self.transport}", *overrides, "--report", str(report))
        line = process.stdout.readline()  # "twin: robot ... Ctrl-C stops" once the node is up
        assert line.startswith("twin: robot"), process.stderr.read()
        return Twin(process, report)

    def deploy(self, *args: str, timeout: float = 60.0) -> tuple[int, str, str]:
        process = self.cli("deploy", *args)
        out, err = process.communicate(timeout=timeout)
        return process.returncode, out, err

    def deploy_running(self, *args: str) -> subprocess.Popen:
        """Start deploy and return once its control loop runs (its "running" line on stderr)."""
        process = self.cli("deploy", *args)
        line = process.stderr.readline()
        assert "running" in line, line + process.stderr.read()
        return process

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
    """A reach policy that reaches: one linear layer, ``action = K (target - tcp)``, ``K`` the tcp Jacobian's
    pseudo-inverse at the start pose (from the arm's MJCF) at gain 0.5, gripper open — a closed-loop
    servo in the artifact format (the tiny-network stand-in for a trained policy: a robo-train run short
    enough for a test does not learn reach reliably). Task config: 2 cm success radius, stop on success."""
    import mujoco

    from real.config import ASSETS

    model = mujoco.MjModel.from_xml_path(str(ASSETS / "reach.xml"))
    data = mujoco.MjData(model)
    arm = ["shoulder_pan", "shoulder_lift", "elbow", "forearm_roll", "wrist_pitch", "tool_roll"]
    robot = yaml.safe_load((ASSETS.parent / "conf" / "robot" / "ros2.yaml").read_text())
    data.qpos[[model.joint(j).qposadr[0] for j in arm]] = robot["start_pose"]
    mujoco.mj_forward(model, data)
    jacobian = np.zeros((3, model.nv))
    mujoco.mj_jacSite(model, data, jacobian, None, model.site("tcp").id)
    gain = 0.5 * np.linalg.pinv(jacobian[:, [model.joint(j).dofadr[0] for j in arm]]) / 0.05  # (6, 3)
    weight, bias = np.zeros((23, 7)), np.zeros(7)
    weight[20:23, :6] = gain.T  # observation 20..22: target_minus_tcp_x|y|z
    bias[6] = -1.0  # gripper open
    folder = write_mlp_artifact(tmp_path_factory.mktemp("artifacts") / "reach", layers=[(weight, bias)])
    spec = json.loads((folder / "spec.json").read_text())
    spec["control_rate_hz"] = 20.0
    spec["task_config"] = {"success_radius": 0.02, "terminate_on_success": True, "max_episode_steps": 100}
    (folder / "spec.json").write_text(json.dumps(spec))
    return folder


@pytest.fixture
def mlp_artifact(tmp_path) -> Callable[..., Path]:
    """``make(rate_hz, scale, edit)``: an untrained MLP artifact with reach's interface; ``edit(spec)``
    changes spec.json."""

    def make(rate_hz: float = 20.0, scale: float = 0.05, edit: Callable[[dict], None] | None = None) -> Path:
        folder = tmp_path / f"mlp-{uuid.uuid4().hex[:6]}"
        write_mlp_artifact(folder)
        spec = json.loads((folder / "spec.json").read_text())
        spec["control_rate_hz"] = rate_hz
        spec["action"]["scale"] = [scale] * 6 + [1.0]
        if edit is not None:
            edit(spec)
        (folder / "spec.json").write_text(json.dumps(spec))
        return folder

    return make
