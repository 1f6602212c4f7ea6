"""The robot commands' arguments and handlers: ``deploy``, ``twin`` and ``bench deploy``.

``robo-reward`` registers them from here (``robo_reward`` may import ``real``, never the reverse), and
``python -m real.cli deploy|twin ...`` runs them without the training side — what a robot computer needs.
User errors (a spec that does not fit the robot, a bad override) raise ``ValueError`` for the caller's
one-line, exit-2 handling; robot-side failures print one line and return 1; Ctrl-C returns 130 after the
arm was told to hold.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

EXIT_ROBOT, EXIT_INTERRUPTED = 1, 130


def add_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("policy", help="the policy artifact folder (policy.onnx + spec.json)")
    parser.add_argument("overrides", nargs="*", help="robot=ros2|ros1|FILE.yaml, goal=[x,y,z], any robot key=value")
    parser.add_argument("--dry-run", action="store_true", help="connect, read and compute, but never send a command")
    parser.add_argument("--record", default=None, help="write the run as a demo file (HDF5)")
    parser.add_argument("--steps", type=int, default=None, help="policy steps (default: the task's episode length)")
    parser.add_argument("--json", action="store_true", help="print the report as one JSON object")


def add_twin_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("overrides", nargs="*", help="robot=ros2|ros1|FILE.yaml and any robot key=value")
    parser.add_argument("--report", default=None, help="write the audit of the commands received (JSON) on exit")
    parser.add_argument("--duration", type=float, default=None, help="stop after this many seconds")


def add_bench_deploy_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--cycles", type=int, default=1000, help="control cycles per transport (deploy)")
    parser.add_argument("--rate-hz", type=float, default=100.0, help="control rate (deploy)")
    parser.add_argument("--transports", default="ros2,ros1", help="comma-separated: ros2, ros1 (deploy)")
    parser.add_argument("--policy", default=None, help="a policy artifact (deploy; default: an untrained MLP)")


def run_deploy(args: argparse.Namespace) -> int:
    from real.arm import ArmError
    from real.config import parse_overrides
    from real.deploy import deploy

    _log_to_stderr("deploy")
    try:
        report = deploy(args.policy, parse_overrides(args.overrides), args.dry_run, args.record, args.steps,
                        announce=lambda line: print(f"robo-reward deploy: {line}", file=sys.stderr, flush=True))
    except ArmError as exc:
        print(f"robo-reward deploy: error: {_first_line(exc)}", file=sys.stderr)
        return EXIT_ROBOT
    except KeyboardInterrupt:
        print("robo-reward deploy: stopped by Ctrl-C before the policy ran", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(json.dumps(report) if args.json else _summary(report))
    stopped = report["stopped"]
    if stopped == "ctrl-c":
        print(f"robo-reward deploy: stopped by Ctrl-C after {report['steps']} steps; the arm holds", file=sys.stderr)
        return EXIT_INTERRUPTED
    if stopped == "estop":
        print(f"robo-reward deploy: e-stop ({report['estop']}) after {report['steps']} steps; the arm holds",
              file=sys.stderr)  # fmt: skip
        return EXIT_ROBOT
    if stopped == "lost":
        print(f"robo-reward deploy: error: {report['error']}", file=sys.stderr)
        return EXIT_ROBOT
    return 0


def run_twin(args: argparse.Namespace) -> int:
    from real.arm import ArmError
    from real.config import load_robot, parse_overrides
    from real.twin import serve

    _log_to_stderr("twin")
    robot, extras = load_robot(parse_overrides(args.overrides))
    if extras:
        raise ValueError(f"twin takes robot keys only, not {', '.join(extras)}")
    banner = (f"twin: robot {robot.name} over {robot.transport}: {robot.topic(robot.joint_states_topic)} at "
              f"{robot.twin.get('state_rate_hz')} Hz, commands on {robot.topic(robot.command_topic)}; Ctrl-C stops")
    try:
        audit = serve(robot, Path(args.report) if args.report else None, args.duration,
                      ready=lambda: print(banner, flush=True))  # fmt: skip
    except ArmError as exc:
        print(f"robo-reward twin: error: {_first_line(exc)}", file=sys.stderr)
        return EXIT_ROBOT
    print(f"twin: stopped; {audit['commands']} commands received, violations {audit['violations']}", flush=True)
    return 0


def run_bench_deploy(args: argparse.Namespace) -> list[dict[str, Any]] | dict[str, str]:
    from real.bench import bench_deploy

    transports = [name for name in args.transports.split(",") if name]
    rows = bench_deploy(args.cycles, args.rate_hz, transports, args.policy)
    if args.json:
        return rows
    return {row["transport"]: f"{row['achieved_hz']} Hz of {row['rate_hz']:g}, command→state latency p50/p99 "
            f"{row['latency_ms_p50']}/{row['latency_ms_p99']} ms, inference p50 {row['inference_ms_p50']} ms"
            for row in rows}  # fmt: skip


def _summary(report: dict[str, Any]) -> str:
    lines = [f"deploy on {report['robot']} ({report['transport']}{', dry run' if report['dry_run'] else ''}): "
             f"{report['steps']} steps at {report['achieved_hz']} Hz (asked {report['rate_hz']:g}), "
             f"stopped: {report['stopped']}",
             f"  cycle p50/p99 {report['cycle_ms_p50']}/{report['cycle_ms_p99']} ms, inference p50/p99 "
             f"{report['inference_ms_p50']}/{report['inference_ms_p99']} ms, overruns {report['overruns']}, "
             f"watchdog holds {report['stale_cycles']}",
             f"  safety interventions: {report['interventions'] or 'none'}"]  # fmt: skip
    if "distance_m" in report:
        lines.append(f"  tcp {report['tcp']} is {report['distance_m']} m from the goal (success: {report['success']})")
    if report.get("record"):
        lines.append(f"  recorded to {report['record']}")
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _log_to_stderr(command: str) -> None:
    """real's warnings (safety interventions) on stderr; a handler of its own, as rospy rewires the root logger."""
    logger = logging.getLogger("real")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(f"robo-reward {command}: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def main(argv: list[str] | None = None) -> int:
    """``python -m real.cli deploy|twin ...``: the robot commands without the training side."""
    parser = argparse.ArgumentParser(prog="python -m real.cli")
    sub = parser.add_subparsers(dest="command", required=True)
    add_deploy_arguments(sub.add_parser("deploy", help="run a policy artifact on a robot"))
    add_twin_arguments(sub.add_parser("twin", help="the MuJoCo arm as a ROS robot"))
    args = parser.parse_args(argv)
    try:
        return run_deploy(args) if args.command == "deploy" else run_twin(args)
    except (ValueError, KeyError, OSError) as exc:
        print(f"robo-reward {args.command}: error: {_first_line(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
