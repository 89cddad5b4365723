#!/usr/bin/env bash
# The ros-* wheels' exported cmake targets name the wheel-build host's include dirs
# (/opt/python/cp3XX-cp3XX/...); point them at this venv's Python and numpy headers (see
# ../shared/ros.md). Works for the cp311 and cp312 wheels. Usage: fix_ros_cmake_exports.sh VENV PY
set -euo pipefail
venv=$1 py=$2
pyinc=$("$py" -c "import sysconfig; print(sysconfig.get_paths()['include'])")
npinc=$("$py" -c "import numpy; print(numpy.get_include())")
files=$(grep -l -E '/opt/python/cp3[0-9]+-cp3[0-9]+/include' "$venv"/share/*/cmake/*Export.cmake \
    || true)
for f in $files; do
    sed -i -E "s#/opt/python/cp3[0-9]+-cp3[0-9]+/include/python3\.[0-9]+#$pyinc#g; \
s#/opt/python/cp3[0-9]+-cp3[0-9]+/lib/python3\.[0-9]+/site-packages/numpy/_core/include#$npinc#g" \
        "$f"
done
