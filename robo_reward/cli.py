"""The ``robo-reward`` command: one entry point for the stack's jobs (the README lists them)."""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from robo_reward.app import guarded

IMPORTERS = ("video", "rosbag", "lerobot")


def _cameras(text: str | None) -> tuple[str, ...] | None:
    return tuple(name for name in text.split(",") if name) if text else None


def _bench(args: argparse.Namespace) -> dict | list:
    if args.what == "deploy":  # before sim's import: a robot computer needs no simulator
        from real.cli import run_bench_deploy

        return run_bench_deploy(args)
    from sim.bench import bench_render, bench_sim, bench_sim_backend

    if args.what != "learn":
        args.num_envs = args.num_envs or 64
    if args.what == "sim" and args.backend != "cpu":
        return bench_sim_backend(args.task, args.backend, args.num_envs, args.steps, args.rounds, args.seed)
    if args.what == "sim":
        return bench_sim(args.task, args.num_envs, args.steps, args.rounds, args.seed)
    if args.what == "label":
        from robo_reward.models.bench import bench_label

        cameras = _cameras(args.cameras) or ("front", "wrist")
        demos = args.num_demos or 200  # ~11k frames: a labelling job, not its fixed costs (forks, file copy)
        return bench_label(args.task, demos, cameras, args.res, args.batch, args.rounds, args.bf16, args.model)
    if args.what == "learn":
        from robo_reward.rl.bench import bench_learn

        variants = [name for name in args.variants.split(",") if name] if args.variants else None
        return bench_learn(args.task, args.budget_min, args.seeds, variants, args.num_envs or 128,
                           args.out, args.model, args.demos, args.jobs, args.warm_start)  # fmt: skip
    if args.what == "record":
        from robo_reward.data.bench import bench_record

        cameras = _cameras(args.cameras) or ("front", "wrist")
        demos = args.num_demos or 32
        return bench_record(args.task, min(args.num_envs, 16), demos, cameras, args.res, args.rounds)
    return bench_render(args.task, args.num_envs, _cameras(args.cameras), args.res, args.rounds)


def _record(args: argparse.Namespace) -> None:
    from robo_reward.data.record import RecordConfig, record

    cfg = RecordConfig(
        task=args.task, num_demos=args.num_demos, out=args.out, cameras=_cameras(args.cameras), res=args.res,
        failure_rate=args.failure_rate, noise=args.noise, num_envs=args.num_envs, seed=args.seed, append=args.append,
        randomize=args.randomize, stop_after_success=args.stop_after_success,
    )  # fmt: skip
    summary = record(cfg)
    print(f"wrote {summary['episodes']} episodes to {summary['file']} (success {summary['success_rate']:.1%})")


def _demo_file(args: argparse.Namespace) -> None:
    from robo_reward.data import validate

    if args.command == "validate":
        result = validate(args.file)
        print(
            f"{args.file}: ok ({result['episodes']} episodes, {result['frames']} frames, cameras {result['cameras']})"
        )
    elif args.command == "view":
        from robo_reward.data.view import view

        result = view(args.file, args.demo, args.out)
        print(f"wrote {result['out']} ({result['frames']} frames; curves: {', '.join(result['curves']) or 'none'})")


def _export(args: argparse.Namespace) -> None:
    from robo_reward.export import export_policy

    result = export_policy(args.run, args.out)
    if args.json:
        _print(result, True)
    else:
        print(
            f"wrote {result['artifact']} ({result['task']}: obs {result['obs_dim']}, act {result['act_dim']}, "
            f"iteration {result['iteration']}; ONNX matches torch within {result['max_abs_diff']:.1g})"
        )


def _rollout(args: argparse.Namespace) -> None:
    from robo_reward.rollout import rollout

    _print(rollout(args.artifact, args.task, args.episodes, args.num_envs, args.seed, args.video), args.json)


def _print(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        width = max(len(key) for key in result)
        for key, value in result.items():
            print(f"{key:<{width}}  {value}")


def _info(args: argparse.Namespace) -> None:
    if args.what == "tasks":
        _info_tasks(0 if args.no_measure else args.episodes, args.json, args.markdown)
        return
    from robo_reward.data import DemoReader, validate

    validate(args.what)
    with DemoReader(args.what) as reader:
        summary = reader.summary()
    _print(summary, args.json)


def _info_tasks(episodes: int, as_json: bool, markdown: bool = False) -> None:
    """Every registered task; the expert's success is measured now, over ``episodes`` episodes (0: not measured)."""
    from sim.catalog import task_rows

    rows = task_rows(episodes)
    if as_json:
        print(json.dumps(rows))
        return
    for row in rows:
        if row["expert_success"] is not None:
            row["expert"] = f"{row['expert_success']:.1%} of {row['expert_episodes']}"
        else:
            row["expert"] = "not measured" if row["has_expert"] else "no expert"
    if markdown:
        print("| task | Gymnasium id | obs | act | cameras | stages | episode | expert success |")
        print("|---|---|---|---|---|---|---|---|")
        for row in rows:
            cells = [f"`{row['task']}`", f"`{row['gym_id']}`", str(row["obs_dim"]), str(row["act_dim"]),
                     ", ".join(row["cameras"]), " → ".join(row["stages"]), f"{row['max_episode_steps']} steps",
                     row["expert"]]  # fmt: skip
            print("| " + " | ".join(cells) + " |")
        return
    for row in rows:
        expert = row["expert"]
        print(
            f"{row['task']:<12} {row['gym_id']:<28} obs={row['obs_dim']:<3} act={row['act_dim']:<2} "
            f"cameras={','.join(row['cameras']):<18} expert={expert:<14} stages={' > '.join(row['stages'])}"
        )


def _render_tasks(args: argparse.Namespace) -> None:
    from sim.catalog import write_frame_grid

    tasks = [name for name in args.tasks.split(",") if name] if args.tasks else None
    result = write_frame_grid(args.out, tasks, args.size, args.seed)
    print(f"wrote {result['out']} ({result['width']}x{result['height']} px, {len(result['tasks'])} tasks)")


class _Parser(argparse.ArgumentParser):
    """argparse with the house rule for mistakes: one line (no usage block), exit code 2."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    from real import cli as real_cli  # the robot commands' arguments (standard library only until they run)

    parser = _Parser(prog="robo-reward", description=__doc__,
                     epilog="The architecture, contracts and command surface: docs/architecture.md in the repository.")
    sub = parser.add_subparsers(dest="command", required=True)

    bench = sub.add_parser("bench", help="benchmarks, each against a baseline measured in the same run")
    bench.add_argument("what", choices=["sim", "render", "record", "label", "learn", "deploy"])
    bench.add_argument("--task", default="push_cube")
    bench.add_argument("--num-envs", type=int, default=None, help="envs stepped together (default 64; learn: 128)")
    bench.add_argument("--steps", type=int, default=200, help="control steps per round (sim)")
    bench.add_argument("--backend", default="cpu", choices=["cpu", "warp"],
                       help="sim: the physics backend; warp is measured against cpu in the same run")  # fmt: skip
    bench.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds")
    bench.add_argument("--cameras", default=None, help="comma-separated camera names (render)")
    bench.add_argument("--res", type=int, default=64, help="image side in pixels (render)")
    bench.add_argument("--seed", type=int, default=0)
    bench.add_argument("--num-demos", type=int, default=None, help="episodes to record (record: 32, label: 200)")
    bench.add_argument("--batch", type=int, default=512, help="frames per forward pass (label)")
    bench.add_argument("--bf16", action="store_true", help="bfloat16 inference (label)")
    bench.add_argument("--model", default=None,
                       help="a trained reward model folder (label, learn; default: train the default PRM)")
    bench.add_argument("--budget-min", type=float, default=10.0, help="training minutes per run (learn)")
    bench.add_argument("--seeds", type=int, default=3, help="seeds per variant (learn)")
    bench.add_argument("--variants", default=None,
                       help="comma-separated (learn; default: sparse,dense,pbrs_privileged,pbrs_prm,direct_prm)")
    bench.add_argument("--jobs", type=_positive, default=1,
                       help="runs trained at a time, each with its share of the cores (learn)")
    bench.add_argument("--out", default="runs/bench_learn", help="run folders, plot and JSON (learn)")
    bench.add_argument("--demos", default=None, help="demos labelled by --model, for the distilled potential (learn)")
    bench.add_argument("--warm-start", default=None, metavar="DEMOS",
                       help="learn: every run starts from behaviour cloning of this demo file of the task "
                            "(record it with action noise: robo-reward record --noise 0.3)")  # fmt: skip
    bench.add_argument("--json", action="store_true", help="print one JSON object")
    real_cli.add_bench_deploy_arguments(bench)

    info = sub.add_parser("info", help="summarise a demo file, or the task registry (`info tasks`)")
    info.add_argument("what", help="a demo file, or `tasks`")
    info.add_argument("--json", action="store_true")
    info.add_argument("--episodes", type=_positive, default=32,
                      help="tasks: expert episodes run now to measure each expert's success (default 32)")
    info.add_argument("--no-measure", action="store_true", help="tasks: list without running the experts")
    info.add_argument("--markdown", action="store_true", help="tasks: a Markdown table (the README's)")

    grid = sub.add_parser("render-tasks", help="a PNG frame grid of every task (start and the expert's last step)")
    grid.add_argument("--out", required=True, help="PNG to write, e.g. docs/tasks.png")
    grid.add_argument("--tasks", default=None, help="comma-separated task ids (default: every registered task)")
    grid.add_argument("--size", type=_positive, default=128, help="tile side in pixels")
    grid.add_argument("--seed", type=int, default=0)

    rec = sub.add_parser("record", help="record demonstrations in simulation with the scripted experts")
    rec.add_argument("--task", default="push_cube")
    rec.add_argument("--num-demos", type=int, default=200)
    rec.add_argument("--out", required=True)
    rec.add_argument("--cameras", default=None, help="comma-separated (default: all of the task's)")
    rec.add_argument("--res", type=int, default=64)
    rec.add_argument("--failure-rate", type=float, default=0.0, help="share of spoiled episodes (negatives)")
    rec.add_argument("--noise", type=float, default=0.0, help="action noise std on every episode")
    rec.add_argument("--num-envs", type=int, default=16)
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--append", action="store_true", help="add to an existing file instead of replacing it")
    rec.add_argument("--randomize", action="store_true",
                     help="domain randomisation on (colours, lights, cameras, distractors, physics); each episode "
                     "stores its draw as the attribute randomization")  # fmt: skip
    rec.add_argument("--stop-after-success", type=int, default=None, metavar="N",
                     help="end an episode N frames after its first frame showing success, as a person stops "
                     "recording once the task is done (default: run to the time limit)")  # fmt: skip

    imp = sub.add_parser("import", help="bring outside demonstrations in (video, ROS bags, LeRobot)")
    kinds = imp.add_subparsers(dest="kind", required=True)
    for kind in IMPORTERS:
        module = importlib.import_module(f"robo_reward.data.importers.{kind}")
        module.add_arguments(kinds.add_parser(kind, help=(module.__doc__ or kind).strip().splitlines()[0]))

    lab = sub.add_parser("label", help="write a reward model's progress into a demo file (resumable)")
    lab.add_argument("file")
    lab.add_argument("--model", required=True, help="checkpoint folder (weights.safetensors + config.json)")
    lab.add_argument("--name", default=None,
                     help="label group name (default: the model's name in its config.json, else its folder's)")
    lab.add_argument("--batch", type=_positive, default=512)
    lab.add_argument("--bf16", action="store_true", help="bfloat16 inference (fast on CPUs with AMX)")
    lab.add_argument("--lanes", type=_positive, default=None,
                     help="processes decoding and inferring side by side (default: torch's thread count)")

    rep = sub.add_parser("report", help="policy runs of a sweep: one table and one plot, mean and spread over seeds")
    rep.add_argument("runs", nargs="+", help="robo-train run folders, or folders holding them (a multirun sweep)")
    rep.add_argument("--plot", default="report.png", help="PNG of success against env steps per group ('' for none)")
    rep.add_argument("--json", action="store_true")

    ev = sub.add_parser("eval", help="VOC, success AUC and progress error of a reward model on demos")
    ev.add_argument("--model", required=True)
    ev.add_argument("--demos", required=True, nargs="+", help="demo files; several give one result each")
    ev.add_argument("--plot", default=None, help="PNG of progress curves (one per file, suffixed, for several)")
    ev.add_argument("--json", action="store_true")

    ens = sub.add_parser("ensemble", help="average several trained reward models into one (a steadier reward)")
    ens.add_argument("models", nargs="+", help="trained reward-model folders (same cameras and image size)")
    ens.add_argument("--out", required=True, help="the ensemble's folder (weights.safetensors + config.json)")

    val = sub.add_parser("validate", help="check a demo file; exit 2 with one line naming the problem")
    val.add_argument("file")

    vw = sub.add_parser("view", help="write one episode as an mp4 (cameras tiled, progress curves)")
    vw.add_argument("file")
    vw.add_argument("--demo", type=int, default=0)
    vw.add_argument("--out", required=True)

    exp = sub.add_parser("export", help="write the policy artifact (policy.onnx + spec.json) of a robo-train run")
    exp.add_argument("run", help="a robo-train run folder (train_summary.json + checkpoint)")
    exp.add_argument("--out", required=True, help="artifact folder to create (an earlier artifact there is replaced)")
    exp.add_argument("--json", action="store_true", help="print one JSON object")

    ro = sub.add_parser("rollout", help="evaluate a policy artifact in simulation through onnxruntime")
    ro.add_argument("artifact", help="a folder written by `robo-reward export`")
    ro.add_argument("--task", default=None, help="default: the artifact's; another only if obs/act sizes match")
    ro.add_argument("--episodes", type=int, default=50)
    ro.add_argument("--num-envs", type=int, default=None, help="parallel envs (default: min(episodes, 32))")
    ro.add_argument("--seed", type=int, default=0)
    ro.add_argument("--video", default=None, help="mp4 of the first 4 envs, every camera at 256 px")
    ro.add_argument("--json", action="store_true", help="print one JSON object")

    real_cli.add_deploy_arguments(sub.add_parser("deploy", help="run a policy artifact on a robot (ROS 2 / ROS 1)"))
    real_cli.add_twin_arguments(sub.add_parser("twin", help="the MuJoCo arm as a ROS robot, to rehearse a deploy"))

    pipeline = sub.add_parser("pipeline", help="the main job (Hydra: overrides key=value, --cfg job, --help)")
    pipeline.add_argument("overrides", nargs="*")
    return parser


# what Ctrl-C leaves behind, per command (every writer publishes its output atomically or resumes it)
KEPT = {
    "record": "the output file is unchanged (episodes are published when recording ends)",
    "import": "the output file is unchanged",
    "label": "labels of finished episodes are kept in the file; the same command resumes",
    "export": "no artifact was published",
    "rollout": "nothing was written",
    "view": "no video was written",
    "render-tasks": "no image was written",
    "deploy": "the arm was left holding its position",
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["pipeline"]:  # a Hydra app: its own flags (--cfg job, --help, -m) and overrides
        from robo_reward.pipeline import main as pipeline

        return _exit_code(lambda: pipeline(argv[1:]))
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as stop:  # --help (0) or a malformed command line (2, one line already printed)
        return stop.code if isinstance(stop.code, int) else 0
    kept = KEPT.get(args.command, "nothing was written")
    return _exit_code(lambda: _run(args), f"robo-reward {args.command}", lambda: kept)


def _exit_code(body, prog: str | None = None, kept=None) -> int:
    """Run ``body`` under :func:`guarded` and return the exit code instead of leaving the interpreter."""
    try:
        if prog is None:
            body()
        else:
            with guarded(prog, kept):
                body()
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    return 0


def _positive(text: str) -> int:
    """An argparse type: an integer ≥ 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer ≥ 1, got {value}")
    return value


def _run(args: argparse.Namespace) -> None:
    if args.command == "bench":
        _print(_bench(args), args.json)
    elif args.command == "info":
        _info(args)
    elif args.command == "render-tasks":
        _render_tasks(args)
    elif args.command == "record":
        _record(args)
    elif args.command == "import":
        module = importlib.import_module(f"robo_reward.data.importers.{args.kind}")
        summary = module.run(args)
        print(f"imported {summary['episodes']} episodes into {summary['file']}")
        for note in summary.get("notes", []):
            print(f"note: {note}")
    elif args.command == "label":
        from robo_reward.app import readable_demo_file
        from robo_reward.label import label
        from robo_reward.models import load_reward_model, model_name

        readable_demo_file(args.file, "FILE")
        name = args.name or model_name(args.model)
        summary = label(args.file, load_reward_model(args.model), name, args.batch, args.bf16, lanes=args.lanes)
        print(f"labelled {summary['episodes']} episodes ({summary['frames']} frames) as /labels/{name} "
              f"in {args.file}")  # fmt: skip
    elif args.command == "eval":
        from robo_reward.app import readable_demo_file
        from robo_reward.models import load_reward_model
        from robo_reward.models.evaluate import evaluate

        for path in args.demos:  # every file checked before the first is scored
            readable_demo_file(path, "--demos")
        model = load_reward_model(args.model)
        if len(args.demos) == 1:
            _print(evaluate(model, args.demos[0], args.plot), args.json)
        else:  # one result per file (in-distribution vs shifted sets side by side)
            results = []
            for path in args.demos:
                plot = Path(args.plot).with_name(f"{Path(args.plot).stem}_{Path(path).stem}.png") if args.plot else None
                results.append({"demos": path, **evaluate(model, path, plot)})
            if args.json:
                print(json.dumps({"model": args.model, "results": results}))
            else:
                for result in results:
                    print(f"{result['demos']}: VOC {result['voc']:.3f}, success AUC {result.get('success_auc')}, "
                          f"progress MAE {result.get('progress_mae')}")
    elif args.command == "ensemble":
        from robo_reward.models.ensemble import RewardEnsemble

        ensemble = RewardEnsemble.from_folders(args.models)
        ensemble.save(args.out, {"name": Path(args.out).resolve().name})
        print(f"wrote an ensemble of {len(args.models)} models ({', '.join(ensemble.cameras)}) to {args.out}")
    elif args.command == "report":
        from robo_reward.report import report

        result = report(args.runs, args.plot or None)
        if args.json:
            print(json.dumps({key: value for key, value in result.items() if key != "markdown"}))
        else:
            print(result["markdown"])
            if args.plot:
                print(f"plot: {args.plot}")
    elif args.command == "export":
        _export(args)
    elif args.command == "rollout":
        _rollout(args)
    elif args.command in ("validate", "view"):
        _demo_file(args)
    elif args.command in ("deploy", "twin"):
        from real import cli as real_cli

        code = real_cli.run_deploy(args) if args.command == "deploy" else real_cli.run_twin(args)
        if code:  # their own exit codes: 1 a robot-side stop, 130 Ctrl-C (the arm left holding)
            sys.exit(code)


if __name__ == "__main__":
    sys.exit(main())
