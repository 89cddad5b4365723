#!/bin/bash
# One call: GPU tests ($TESTS), then launch-knob variants against the default in one process
# (bench_launch_knobs.py, rounds interleaved) on the carried assets and zoo models. Carry
# .devslim (device_verify.sh says what it holds).
#   TESTS="test/cuda/a.py ..." VARIANTS=default,pool_off ZOO_MODELS=mtcnn-pnet \
#     bash bench/device_knobs.sh
# Env caps: TEST_S, BENCH_S. Results: $OUT/results.tgz.
set -u
source bench/device_env.sh
since unpacked
if [ -n "${TESTS:-}" ]; then
  timeout ${TEST_S:-240} python3 -m pytest -q -p no:cacheprovider -rfE \
    ${XDIST:+-n $XDIST --dist loadfile} $TESTS > $OUT/test_cuda.log 2>&1
  since tests
fi
timeout ${BENCH_S:-200} python3 bench/bench_launch_knobs.py --models "${MODELS:-}" \
  --assets /tmp/tx2cache/assets --zoo-packed $D/zoo --zoo-models "${ZOO_MODELS:-}" \
  --variants "${VARIANTS:-default}" --rounds ${ROUNDS:-5} --onnx-dir /tmp/knobs_onnx \
  --deadline-s $(( ${BENCH_S:-200} - 40 )) --out $OUT/${NAME:-launch_knobs}_h200.json \
  > $OUT/knobs.log 2>&1
since bench
grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log 2>/dev/null | cut -c1-200 | tail -n 25
grep -vE "^\s*$" $OUT/knobs.log | cut -c1-400 | tail -n 12
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
