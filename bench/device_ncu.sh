#!/bin/bash
# One call: Nsight Compute over BERT-tiny's launches (ours from the graph, torch FP16 eager),
# the launch-knob GPU tests and A/B bench, and the GPU tests named in $TESTS.
# Carry .devslim (bench/device_verify.sh says what it holds). Results: $OUT/results.tgz.
set -u
source bench/device_env.sh
WORK=/tmp/tx2
timeout ${EXPORT_S:-90} python3 bench/bench_torch.py export --dir $WORK/onnx \
  --models ${MODELS:-bert_tiny} > $OUT/export.log 2>&1 || echo "export failed"
since exported
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu | head -1)
SECTIONS="--section SpeedOfLight --section LaunchStats --section Occupancy"
SECTIONS="$SECTIONS --section WarpStateStats --section SchedulerStats --section MemoryWorkloadAnalysis"
for m in ${MODELS:-bert_tiny}; do
  timeout ${NCU_S:-120} $NCU --clock-control none --profile-from-start off --csv \
    --page details $SECTIONS python3 bench/ncu_launches.py ours --onnx $WORK/onnx/$m.onnx \
    > $OUT/ncu_ours_$m.csv 2> $OUT/ncu_ours_$m.err
  timeout ${NCU_S:-120} $NCU --clock-control none --profile-from-start off --csv \
    --page details $SECTIONS python3 bench/ncu_launches.py torch --model $m \
    > $OUT/ncu_torch_$m.csv 2> $OUT/ncu_torch_$m.err
  since "ncu $m"
done
timeout ${TEST_S:-200} python3 -m pytest -q -p no:cacheprovider -rfE \
  ${XDIST:+-n $XDIST --dist loadfile} ${TESTS:-test/cuda/test_green.py} > $OUT/test_cuda.log 2>&1
since tests
if [ -n "${KNOBS_S:-}" ]; then
  mkdir -p /tmp/emptyzoo
  timeout $KNOBS_S python3 bench/bench_launch_knobs.py --models bert_tiny \
    --zoo-packed /tmp/emptyzoo --onnx-dir $WORK/onnx --deadline-s $(( KNOBS_S - 30 )) \
    --out $OUT/launch_knobs_h200.json > $OUT/launch_knobs.log 2>&1
  since knobs
  tail -n 3 $OUT/launch_knobs.log | cut -c1-400
fi
grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-200 | tail -n 25
tail -n 3 $OUT/ncu_*.err | cut -c1-300
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
