#!/bin/bash
# One GPU call per zoo pack group (bench/README.md): here `python bench/zoo_data.py pack .zoo N`
# and the pycuda wheels in .whl/; there `bash bench/device_zoo.sh N` (carry .zoo and .whl).
# Results come back as $OUT/results.tgz.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .whl/*.whl 2>&1 | grep -v "already exists" || true
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee $OUT/device.txt
if [ -n "${TESTS:-}" ]; then   # GPU test files (the zoo tests read the carried pack)
  TX2_INFER_ZOO_PACKED=$PWD/.zoo timeout ${TEST_S:-150} python3 -m pytest -q -p no:cacheprovider \
    -rfE $TESTS > $OUT/tests.log 2>&1
  grep -E "FAILED|ERROR|passed|failed" $OUT/tests.log | cut -c1-200 | tail -n 8
fi
timeout ${ZOO_S:-420} python3 bench/bench_zoo.py --packed .zoo --backend cuda --out-dir $OUT \
  --tag h200_g$1 --deadline-s $(( ${ZOO_S:-420} - 20 )) > $OUT/zoo_g$1.log 2>&1
tail -n 25 $OUT/zoo_g$1.log | cut -c1-220
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
