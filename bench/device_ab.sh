#!/bin/bash
# One call: GPU tests of new kernels ($TESTS), then this tree's kernels against an old tree's
# (bench_kernels_ab.py; carry .old/kernels, e.g. `git archive HEAD~ kernels | tar -x -C .old`)
# on the PyTorch exports and the carried assets. Carry .devslim too (device_verify.sh).
#   TESTS="test/cuda/a.py ..." XDIST=4 bash bench/device_ab.sh
# TREES="name=dir,..." adds kernel trees (carried) to the same rounds.
# Env caps: TEST_S, AB_S. Results: $OUT/results.tgz.
set -u
source bench/device_env.sh
if [ -n "${TESTS:-}" ]; then
  timeout ${TEST_S:-240} python3 -m pytest -q -p no:cacheprovider -rfE \
    ${XDIST:+-n $XDIST --dist loadfile} $TESTS > $OUT/test_cuda.log 2>&1
  since tests
fi
timeout ${AB_S:-240} python3 bench/bench_kernels_ab.py --old-kernels .old/kernels --trees "${TREES:-}" \
  --models ${MODELS:-resnet50,yolov5s,bert_tiny} --assets /tmp/tx2cache/assets \
  --onnx-dir /tmp/ab_onnx --deadline-s $(( ${AB_S:-240} - 60 )) \
  --out $OUT/kernels_ab_h200.json > $OUT/kernels_ab.log 2>&1
since ab
grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log 2>/dev/null | cut -c1-200 | tail -n 25
grep -E "old .* new|Error|error" $OUT/kernels_ab.log | cut -c1-300 | tail -n 12
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
