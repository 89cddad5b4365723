#!/bin/bash
# One call: GPU tests of new kernels ($TESTS), this tree's kernels against .old/kernels
# (bench_kernels_ab.py), then the torch race (device_race.sh fast) on the tree whose kernels
# passed: where a test failed, the race runs .old/kernels ($TX2_INFER_KERNEL_DIR) and says so.
# Carry .devslim (device_verify.sh) and .old. Everything comes back as $OUT/race.tgz.
#   TESTS="test/cuda/a.py ..." COMMIT=abc1234 bash bench/device_ab_race.sh
set -u
[ -d .devdata ] || mv .devslim .devdata  # device_race.sh reads .devdata
D=.devdata source bench/device_env.sh
timeout ${TEST_S:-150} python3 -m pytest -q -p no:cacheprovider -rfE -n ${XDIST:-4} \
  --dist loadfile ${TESTS} > $OUT/tests.log 2>&1
grep -E "FAILED|ERROR|passed|failed" $OUT/tests.log | cut -c1-200 | tail -n 12
since tests
timeout ${AB_S:-100} python3 bench/bench_kernels_ab.py --old-kernels .old/kernels \
  --models ${MODELS:-resnet50,yolov5s,bert_tiny} --assets "${ASSETS-/tmp/tx2cache/assets}" \
  --onnx-dir /tmp/ab_onnx --deadline-s $(( ${AB_S:-100} - 30 )) --rounds 3 --runs 150 \
  --out $OUT/kernels_ab_h200.json > $OUT/kernels_ab.log 2>&1
grep -E "old .* new" $OUT/kernels_ab.log | cut -c1-200
since ab
DIRTY=""
# a failure, or no summary line (the run was cut by TEST_S), keeps the old kernels
if grep -qE "FAILED|ERROR" $OUT/tests.log || ! grep -qE " passed" $OUT/tests.log; then
  export TX2_INFER_KERNEL_DIR=$PWD/.old/kernels
  DIRTY="kernels of .old (the new kernels failed or did not finish their GPU tests)"
  echo "race on .old/kernels"
fi
LEFT=$(( ${BUDGET_S:-570} - $(date +%s) + T0 ))
DIRTY="$DIRTY" DEADLINE=$(( LEFT - 20 )) bash bench/device_race.sh fast \
  ${RACE_MODELS:-resnet50,yolov5s,bert_tiny} > /dev/null 2>&1
since race
tar xzf $OUT/race.tgz -O ./race.log 2>/dev/null | grep -vE "^\s*$" | tail -n 16 | cut -c1-240
