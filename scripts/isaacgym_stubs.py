"""Make the installed ``isaacgym-stubs`` readable by mypy: ``python scripts/isaacgym_stubs.py OUT_DIR``.

The PyPI package (1.0rc4 and 1.1rc4 alike) ships ``isaacgym-stubs/gymapi.pyi`` with an ``__init__.py``
instead of ``__init__.pyi`` — so mypy does not take it for a stub package — and two properties named
``lambda`` (the contact force of ``RigidContact`` / ``SoftContact``), a syntax error in a stub. This copies
it to ``OUT_DIR/isaacgym/`` with an ``__init__.pyi`` and those properties renamed ``lambda_``; nothing
else changes. ``[tool.mypy] mypy_path`` points at ``OUT_DIR`` (``.mypy_stubs``), which precedes
installed packages. Fails in one line when the package is missing or no longer looks like this.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

DIST = "isaacgym-stubs"
LAMBDA = re.compile(r"(\bdef )lambda(\()")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python scripts/isaacgym_stubs.py OUT_DIR", file=sys.stderr)
        return 2
    try:
        dist = metadata.distribution(DIST)
    except metadata.PackageNotFoundError:
        print(f"isaacgym_stubs: {DIST} is not installed (pip install -e '.[test]')", file=sys.stderr)
        return 1
    source = Path(str(dist.locate_file(f"{DIST}/gymapi.pyi")))
    if not source.is_file():
        print(f"isaacgym_stubs: {DIST} {dist.version} has no {source}", file=sys.stderr)
        return 1
    text, renamed = LAMBDA.subn(r"\1lambda_\2", source.read_text())
    if renamed == 0 or "class Gym:" not in text:
        print(f"isaacgym_stubs: {source} does not look like {DIST} 1.x any more; check it by hand", file=sys.stderr)
        return 1
    out = Path(argv[0]) / "isaacgym"
    out.mkdir(parents=True, exist_ok=True)
    (out / "gymapi.pyi").write_text(text)
    header = f"# isaacgym-stubs {dist.version}, via scripts/isaacgym_stubs.py\n"
    (out / "__init__.pyi").write_text(header + "from . import gymapi as gymapi\n")
    print(f"isaacgym_stubs: {DIST} {dist.version} -> {out} ({renamed} 'lambda' properties renamed)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
