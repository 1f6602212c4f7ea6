#!/usr/bin/env bash
# Set up (if needed) and run the main job. Extra arguments are Hydra overrides for the pipeline.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
VENV="${ROBO_REWARD_VENV:-.venv}"
export MUJOCO_GL="${MUJOCO_GL:-egl}" HF_HUB_OFFLINE=1
"$VENV/bin/robo-reward" pipeline "$@"
