#!/usr/bin/env bash
# The ros-* wheels' exported cmake targets name the wheel-build host's include dirs; point them at
# this venv's Python and numpy headers (see ../shared/ros.md). Usage: fix_ros_cmake_exports.sh VENV PY
set -euo pipefail
venv=$1 py=$2
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())")
files=$(grep -l /opt/python/cp311-cp311/include "$venv"/share/*/cmake/*Export.cmake || true)
for f in $files; do
    sed -i "s#/opt/python/cp311-cp311/include/python3.11#$pyinc#g; \
s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$npinc#g" "$f"
done
