"""How every command ends: a user's mistake is one line on stderr and exit code 2, Ctrl-C is one line
("interrupted; <what was kept>") and exit code 130, and only a bug shows a traceback.

The Hydra apps (``robo-train``, ``robo-train-reward``, ``robo-reward pipeline``) get the same discipline:
their overrides are composed once before Hydra runs the job, so an unknown key, an unknown group option,
a malformed override or a value of the wrong type is one line naming it (with the valid choices or the
closest key), not Hydra's multi-line report or a traceback from deep inside the job.
"""

from __future__ import annotations

import difflib
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
# A user's mistake, by the exception it arrives as: bad values (DemoFileError, config and resume errors are
# ValueErrors), files that are missing or unreadable (OSError), keys absent from a file (KeyError).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, OSError)


class UsageError(ValueError):
    """A bad configuration or input, found before any work: reported as one line, exit code 2."""


def first_line(error: BaseException) -> str:
    text = str(error).strip()
    if isinstance(error, KeyError) and error.args:
        text = str(error.args[0])
    return text.splitlines()[0] if text else type(error).__name__


def fail(prog: str, message: str) -> NoReturn:
    print(f"{prog}: error: {message}", file=sys.stderr)
    sys.exit(2)


def interrupted(prog: str, kept: str) -> NoReturn:
    print(f"{prog}: interrupted; {kept}", file=sys.stderr)
    sys.exit(130)


@contextmanager
def guarded(prog: str, kept: Callable[[], str] = lambda: "nothing was written",
            on_error: Callable[[], None] | None = None) -> Iterator[None]:  # fmt: skip
    """Run a command's body: user errors and Ctrl-C become one line and exit 2 / 130.

    ``kept()`` says what a Ctrl-C leaves behind (asked at the moment it happens); ``on_error`` removes what
    a refused or interrupted run must not leave (e.g. an empty run folder).
    """
    try:
        yield
    except KeyboardInterrupt:
        if on_error:
            on_error()
        interrupted(prog, kept())
    except USER_ERRORS as error:
        if on_error:
            on_error()
        fail(prog, first_line(error))


# ---------------------------------------------------------------------------------------------- Hydra apps


def check_overrides(config_name: str, overrides: list[str]) -> None:
    """Compose ``config_name`` with ``overrides`` (every value of a sweep) and raise ``UsageError`` with
    one line for anything Hydra or OmegaConf refuses, or a value whose type differs from the default's."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except HydraException as error:
        raise UsageError(f"cannot parse the overrides {' '.join(overrides)}: {first_line(error)}") from None
    variants = [[o.input_line for o in parsed if not o.is_sweep_override()]]
    fixed = variants[0]
    for sweep in (o for o in parsed if o.is_sweep_override()):
        key = sweep.get_key_element()
        variants += [[*fixed, f"{key}={value}"] for value in sweep.sweep_string_iterator()]
    for variant in variants:
        try:
            _check_variant(config_name, variant)
        except (HydraException, OmegaConfBaseException) as error:
            raise UsageError(_explain(error, config_name, variant)) from None


def compose_config(config_name: str, overrides: list[str], hydra_node: bool = False):
    """``conf/<config_name>.yaml`` with ``overrides``, inside a running Hydra app or outside one."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    import robo_reward.config  # noqa: F401  (registers the task defaults the task group extends)

    if GlobalHydra.instance().is_initialized():
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=hydra_node)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        return compose(config_name=config_name, overrides=overrides, return_hydra_config=hydra_node)


def _compose(config_name: str, overrides: list[str]):
    return compose_config(config_name, overrides, hydra_node=True)


def _is_group(key: str) -> bool:
    """A config group: a folder of ``conf/``, a group of Hydra's config store (``task``) or Hydra's own."""
    from hydra.core.config_store import ConfigStore

    return (CONF_DIR / key).is_dir() or key.startswith("hydra/") or key in ConfigStore.instance().repo


def _check_variant(config_name: str, overrides: list[str]) -> None:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    cfg = _compose(config_name, overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    groups = [o.input_line for o in parsed if _is_group(o.key_or_group)]
    base = _compose(config_name, groups)
    for override in parsed:
        key = override.key_or_group
        if _is_group(key) or override.is_delete() or override.is_add():
            continue
        try:
            default = OmegaConf.select(base, key, throw_on_missing=False)
            value = OmegaConf.select(cfg, key, throw_on_missing=False)
        except Exception:  # an interpolation only a running job resolves (${hydra:...})
            continue
        expected = _expected_type(default)
        if expected and not _fits(value, expected) and not _jitter_range(key, default, value):
            raise UsageError(f"{override.input_line}: expected {expected} (default {default})")


def _expected_type(default: Any) -> str | None:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    return None


def _fits(value: Any, expected: str) -> bool:
    if expected == "true or false":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if expected == "an integer" else isinstance(value, int | float)


def _jitter_range(key: str, default: Any, value: Any) -> bool:
    """A domain-randomisation jitter (a number) may be given as a magnitude range ``[lo, hi]``."""
    from omegaconf import ListConfig

    return (
        ".randomize." in f".{key}"
        and isinstance(default, int | float)
        and isinstance(value, ListConfig | list)
        and len(value) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    )


def _explain(error: BaseException, config_name: str, overrides: list[str]) -> str:
    """One line for a composition error: the override, what is wrong, and what would be valid."""
    from hydra.errors import MissingConfigException

    if isinstance(error, MissingConfigException) and error.options:
        group = (error.missing_cfg_file or "").rsplit("/", 1)[0]
        chosen = next((o.split("=", 1)[1] for o in overrides if o.split("=", 1)[0].lstrip("+~") == group), "?")
        return f"{group}={chosen}: unknown option; available: {', '.join(sorted(error.options))}"
    cause = error.__cause__
    message = first_line(error)
    if message.startswith("Could not override '") and cause is not None:
        key = message.split("'")[1]
        return f"{key}: unknown key{_suggest(config_name, overrides, key)} (to add a new key: +{key}=...)"
    return message


def _suggest(config_name: str, overrides: list[str], key: str) -> str:
    from omegaconf import DictConfig

    parent, _, leaf = key.rpartition(".")
    kept = [o for o in overrides if o.split("=", 1)[0] != key]
    try:
        node = _compose(config_name, kept)
        node = _select(node, parent) if parent else node
    except Exception:  # the suggestion is a courtesy; the error line stands without it
        return ""
    if not isinstance(node, DictConfig):
        return ""
    close = difflib.get_close_matches(leaf, [str(k) for k in node.keys() if k != "hydra"], n=3)
    prefix = f"{parent}." if parent else ""
    return f"; did you mean {' or '.join(prefix + name for name in close)}?" if close else ""


def _select(node, path: str):
    from omegaconf import OmegaConf

    return OmegaConf.select(node, path, throw_on_missing=False)


def hydra_app(prog: str, config_name: str, job: Callable[[Any], None],
              torchrun_needs: tuple[str, ...] = ()) -> Callable[..., None]:  # fmt: skip
    """The entry point of a Hydra app: overrides checked up front, then Hydra runs ``job(cfg)``.

    ``main(argv)`` takes the app's arguments (default: the command line's), Hydra's flags included. Under
    torchrun (``WORLD_SIZE`` > 1) one of the overrides ``torchrun_needs`` names must be given — the folder all
    ranks share — and is asked for before Hydra makes any folder (each rank's default is its own start time)."""
    import hydra
    from hydra._internal.utils import get_args_parser

    decorated = hydra.main(config_path=str(CONF_DIR), config_name=config_name, version_base=None)(job)

    def main(argv: list[str] | None = None) -> None:
        argv = list(sys.argv[1:] if argv is None else argv)
        args, _ = get_args_parser().parse_known_args(argv)
        given = {o.split("=", 1)[0].lstrip("+~") for o in args.overrides}
        if not (args.help or args.hydra_help or args.shell_completion or args.info):
            with guarded(prog):
                check_overrides(config_name, list(args.overrides))
                if torchrun_needs and int(os.environ.get("WORLD_SIZE", "1")) > 1 and not given & set(torchrun_needs):
                    raise UsageError(f"under torchrun give {torchrun_needs[0]}=DIR: every rank must use the same "
                                     "folder (the default one is named after each rank's start time)")  # fmt: skip
        if int(os.environ.get("RANK", "0")) > 0:  # torchrun's other ranks: rank 0 keeps Hydra's record and log
            argv += ["hydra.output_subdir=null", "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]
            if "hydra.run.dir" not in given:
                argv.append("hydra.run.dir=.")  # no folder of their own (named after their start time) to clean up
        saved = sys.argv
        sys.argv = [prog, *argv]  # Hydra reads its arguments from here
        try:
            with guarded(prog):
                decorated()
        finally:
            sys.argv = saved

    return main


def discard_empty_run(run_dir: str | Path, also: frozenset[str] | set[str] = frozenset()) -> None:
    """Remove a run folder that holds nothing but Hydra's own record (and the names in ``also``) — a
    refused run writes nothing — and the folders above it that this left empty, up to the working directory."""
    run_dir = Path(run_dir).resolve()
    cwd = Path.cwd().resolve()
    if run_dir == cwd or run_dir in cwd.parents:  # e.g. hydra.run.dir=. : never the working directory itself
        return
    hydra_record = {".hydra", f"{Path(sys.argv[0]).stem}.log", "train.log", "train_reward.log", "pipeline.log"}
    if not run_dir.is_dir() or not {p.name for p in run_dir.iterdir()} <= hydra_record | set(also):
        return
    shutil.rmtree(run_dir)
    for parent in run_dir.parents:
        if parent == cwd or cwd not in parent.parents or any(parent.iterdir()):
            break
        parent.rmdir()


def readable_demo_file(path: str | Path, what: str) -> Path:
    """``path`` if it is an HDF5 file with demo episodes; else ``UsageError`` naming ``what`` and the file."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{what}={path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f or not any(name.startswith("demo_") for name in f["data"]):
                raise UsageError(f"{what}={path}: no demo episodes in the file (/data/demo_<i>)")
    except OSError as error:
        raise UsageError(f"{what}={path}: not a readable HDF5 demo file ({first_line(error)})") from None
    return path
