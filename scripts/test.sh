#!/usr/bin/env bash
# Set up (if needed), lint, and run the test suite. Extra arguments go to pytest (e.g. -m slow).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV="${ROBO_REWARD_VENV:-.venv}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
"$VENV/bin/ruff" check .
"$VENV/bin/python" -m pytest "$@"
