#!/usr/bin/env bash
# Set up (if needed), lint, and run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV="${ROBO_REWARD_VENV:-.venv}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
"$VENV/bin/ruff" check .
"$VENV/bin/python" scripts/isaacgym_stubs.py .mypy_stubs >/dev/null
"$VENV/bin/mypy"  # [tool.mypy] files: sim/isaac_gym.py against isaacgym-stubs
"$VENV/bin/python" -m pytest "$@"
