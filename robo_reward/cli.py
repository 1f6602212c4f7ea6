"""The ``robo-reward`` command: one entry point for the stack's jobs (see DESIGN.md, "Commands")."""

from __future__ import annotations

import argparse
import json
import sys


def _bench(args: argparse.Namespace) -> dict:
    from sim.bench import bench_render, bench_sim

    if args.what == "sim":
        return bench_sim(args.task, args.num_envs, args.steps, args.rounds, args.seed)
    cameras = tuple(args.cameras.split(",")) if args.cameras else None
    return bench_render(args.task, args.num_envs, cameras, args.res, args.rounds)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _info_tasks() -> None:
    import sim

    for name, cls in sim.TASKS.items():
        print(
            f"{name:<10} obs={cls.obs_dim:<3} act={cls.act_dim:<2} cameras={','.join(cls.cameras):<18} "
            f"stages={','.join(cls.stage_names)}  gym={cls.gym_id}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="robo-reward", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    bench.add_argument("what", choices=["sim", "render"])
    bench.add_argument("--task", default="push_cube")
    bench.add_argument("--num-envs", type=int, default=64)
    bench.add_argument("--steps", type=int, default=200, help="control steps per round (sim)")
    bench.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    bench.add_argument("--cameras", default=None, help="comma-separated camera names (render)")
    bench.add_argument("--res", type=int, default=64, help="image side in pixels (render)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--json", action="store_true", help="print one JSON object")

    info = sub.add_parser("info", help="summarise the task registry")
    info.add_argument("what", choices=["tasks"])

    pipeline = sub.add_parser("pipeline", help="the main job (Hydra overrides key=value)")
    pipeline.add_argument("overrides", nargs="*")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "bench":
            _print(_bench(args), args.json)
        elif args.command == "info":
            _info_tasks()
        elif args.command == "pipeline":
            from robo_reward.pipeline import run_pipeline

            run_pipeline(args.overrides)
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"robo-reward {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
