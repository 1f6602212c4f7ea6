"""``robo-reward bench deploy``: the deploy loop over real ROS 2 and ROS 1 graphs on loopback.

For each transport: a private graph (ROS 2: localhost-only discovery in a domain of its own; ROS 1: a
``rosmaster --core`` on 127.0.0.1 at a free port), the twin as a mock arm that echoes each command as its
joint state (ros2_control's mock hardware, so the arm adds no dynamics), and ``deploy`` itself in a
second process — the two message stacks cannot share one — running the policy for ``cycles`` cycles at
``rate_hz``. Each row: achieved rate, command→state latency (command published → the echoed state
received, the two-hop round trip a real arm's state path also takes), and policy inference time.

The policy is the given artifact at the benchmark's rate, or by default an untrained MLP of the size
robo-train exports for the tabletop tasks (23 → 128 → 128 → 7, ELU), built with ``onnx`` from seeded
random weights: inference costs the same as a trained one.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from real.artifact import ONNX_FILE, SPEC_FILE, load_artifact

GOAL = "goal=[0.45,0.0,0.15]"
# the reach task's observation and action names (sim/tasks/reach.py), for the default policy
ARM = ("shoulder_pan", "shoulder_lift", "elbow", "forearm_roll", "wrist_pitch", "tool_roll")
OBS_NAMES = [
    *(f"{j}_pos" for j in ARM), *(f"{j}_vel" for j in ARM), "left_finger_pos", "right_finger_pos",
    *(f"tcp_{a}" for a in "xyz"), *(f"target_{a}" for a in "xyz"), *(f"target_minus_tcp_{a}" for a in "xyz"),
]  # fmt: skip
ACTION_NAMES = [*(f"{j}_target_delta" for j in ARM), "gripper"]
LIMITS = ([-2.8, -1.6, -2.5, -2.8, -2.2, -2.8], [2.8, 1.9, 2.5, 2.8, 2.2, 2.8])


def bench_deploy(cycles: int, rate_hz: float, transports: list[str], policy: str | None) -> list[dict[str, Any]]:
    """One row per transport (see the module docstring)."""
    if cycles < 10:
        raise ValueError(f"cycles must be >= 10, got {cycles}")
    unknown = [t for t in transports if t not in ("ros2", "ros1")]
    if unknown or not transports:
        raise ValueError(f"transports must be ros2 and/or ros1, got {','.join(transports) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="bench_deploy_") as tmp:
        artifact = Path(tmp) / "policy"
        if policy:
            shutil.copytree(policy, artifact)
        else:
            write_mlp_artifact(artifact)
        spec = json.loads((artifact / SPEC_FILE).read_text())
        spec["control_rate_hz"] = rate_hz
        (artifact / SPEC_FILE).write_text(json.dumps(spec))
        load_artifact(artifact)  # one-line refusal here, not in a child process
        return [_run(transport, artifact, cycles, rate_hz, Path(tmp)) for transport in transports]


def _run(transport: str, artifact: Path, cycles: int, rate_hz: float, tmp: Path) -> dict[str, Any]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    master = None
    if transport == "ros2":
        env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(50 + os.getpid() % 50))
    else:
        port = free_port()
        env.update(ROS_MASTER_URI=f"http://127.0.0.1:{port}", ROS_IP="127.0.0.1")
        master = subprocess.Popen(["rosmaster", "--core", "-p", str(port), "-w", "1"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    robot = [f"robot={transport}", "safety.keyboard_estop=false"]
    twin = subprocess.Popen(
        [sys.executable, "-m", "real.cli", "twin", *robot, "twin.physics=false", "twin.publish_on_command=true",
         f"twin.state_rate_hz={rate_hz}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "real.cli", "deploy", str(artifact), *robot, GOAL, "--steps", str(cycles), "--json"],
            env=env, capture_output=True, text=True, timeout=60 + 3 * cycles / rate_hz)  # fmt: skip
    finally:
        for process in (twin, master):
            if process is not None:
                process.terminate()
                process.wait(timeout=10)
    if proc.returncode != 0 or not proc.stdout.strip():
        reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"bench deploy over {transport}: the deploy run failed ({reason})")
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return {
        "transport": transport, "rate_hz": rate_hz, "achieved_hz": report["achieved_hz"],
        "latency_ms_p50": report["latency_ms_p50"], "latency_ms_p99": report["latency_ms_p99"],
        "inference_ms_p50": report["inference_ms_p50"], "cycles": report["steps"],
        "latency_samples": report["latency_samples"], "cycle_ms_p99": report["cycle_ms_p99"],
        "overruns": report["overruns"], "interventions": report["interventions"],
    }  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_mlp_artifact(
    folder: Path,
    hidden: tuple[int, ...] = (128, 128),
    seed: int = 0,
    layers: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> Path:
    """An artifact (policy.onnx + spec.json) with reach's interface: an MLP with seeded random weights, or
    the given ``layers`` [(weight (in, out), bias (out,)), ...] (ELU between them, the output clipped)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    sizes = [len(OBS_NAMES), *hidden, len(ACTION_NAMES)]
    if layers is None:
        layers = [((rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)), np.zeros(n_out))
                  for n_in, n_out in itertools.pairwise(sizes)]  # fmt: skip
    sizes = [len(OBS_NAMES), *(len(bias) for _, bias in layers)]
    nodes, weights, current = [], [], "obs"
    for k, (w, b) in enumerate(layers):
        weights += [numpy_helper.from_array(np.asarray(w, np.float32), f"w{k}"),
                    numpy_helper.from_array(np.asarray(b, np.float32), f"b{k}")]  # fmt: skip
        nodes.append(helper.make_node("Gemm", [current, f"w{k}", f"b{k}"], [f"h{k}"]))
        current = f"h{k}"
        if k < len(sizes) - 2:
            nodes.append(helper.make_node("Elu", [current], [f"a{k}"]))
            current = f"a{k}"
    weights += [numpy_helper.from_array(np.float32(-1.0), "lo"), numpy_helper.from_array(np.float32(1.0), "hi")]
    nodes.append(helper.make_node("Clip", [current, "lo", "hi"], ["actions"]))
    graph = helper.make_graph(
        nodes, "mlp", [helper.make_tensor_value_info("obs", TensorProto.FLOAT, ["batch", sizes[0]])],
        [helper.make_tensor_value_info("actions", TensorProto.FLOAT, ["batch", sizes[-1]])], weights)  # fmt: skip
    folder.mkdir(parents=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), folder / ONNX_FILE)
    spec = {
        "format": "robo_reward.policy", "format_version": 1, "task": "reach", "task_config": {},
        "created": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()), "commit": None, "dirty": None,
        "observation": {"dim": len(OBS_NAMES), "names": OBS_NAMES},
        "action": {"dim": len(ACTION_NAMES), "mode": "joint_delta", "names": ACTION_NAMES,
                   "scale": [0.05] * len(ARM) + [1.0], "semantics": "joint target deltas; gripper -1 open, +1 closed"},
        "joints": {"names": list(ARM), "lower": LIMITS[0], "upper": LIMITS[1]},
        "control_rate_hz": 100.0,
        "onnx": {"file": ONNX_FILE, "input": "obs", "output": "actions", "opset": 18},
        "source": {"run_dir": None, "checkpoint": None, "iteration": None, "note": "untrained MLP, bench deploy"},
    }  # fmt: skip
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2))
    return folder
