#!/usr/bin/env bash
# Build the test-only, wire-compatible vision_msgs (test/vision_msgs) with colcon into WS/install.
# Usage: build_vision_msgs.sh VENV WS
set -euo pipefail
venv=$1 ws=$2
here=$(cd "$(dirname "$0")/.." && pwd)
export VIRTUAL_ENV=$venv PATH=$venv/bin:$PATH
export AMENT_PREFIX_PATH=$venv CMAKE_PREFIX_PATH=$venv
rm -rf "$ws/build" "$ws/install"
mkdir -p "$ws"
"$venv/bin/colcon" --log-base "$ws/log" build --base-paths "$here/test/vision_msgs" \
    --build-base "$ws/build" --install-base "$ws/install" \
    --cmake-args -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF
