#!/usr/bin/env bash
# Set up robo_reward on a fresh Debian machine: rendering libraries, a virtual environment, the package.
# Idempotent: a second run with an unchanged pyproject.toml only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${ROBO_REWARD_VENV:-.venv}"
PYTHON="${PYTHON:-python3}"
# Rendering libraries, and Debian's ROS 1 client (rospy, a master, the messages real/ uses) for older arms.
# rospy stays out of the venv's path: its message packages share names with ROS 2's (std_msgs, ...), so
# real/ros1.py puts Debian's packages first only in a ROS 1 process, while it imports rospy.
APT_PACKAGES=(libegl1 libgl1 libosmesa6 libglib2.0-0
  python3-rospy python3-rosmaster python3-std-msgs python3-sensor-msgs python3-trajectory-msgs)

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"

stamp="$VENV/.robo_reward_setup"
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into $VENV (first time: a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  # torch and torchvision are pinned in the same command as everything else, so nothing pulls other builds.
  "$VENV/bin/python" -m pip install -q -e ".[test,ros2,slurm]" "torch==2.14.1" "torchvision==0.29.1"
  echo "$want" > "$stamp"
fi
echo "setup: ready ($VENV)"
