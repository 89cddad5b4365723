#!/bin/bash
# One call: GPU tests of new work, then the TX2-slice bench (old and new SIMT kernels side by
# side) and ours on BERT-tiny. Carry .devslim: whl/ (pycuda), photos/, yolov3-tiny
# (devdata-packed), open_nsfw (devdata-packed), zoo/ (a zoo pack: bench/zoo_data.py pack-names).
#   TESTS="test/cuda/a.py ..." XDIST=4 bash bench/device_verify.sh
# Env caps: TEST_S, BENCH_S, EXPORT_S. Results: $OUT/results.tgz.
set -u
source bench/device_env.sh
since unpacked
WORK=/tmp/tx2 A=/tmp/tx2cache/assets
timeout ${EXPORT_S:-120} python3 bench/bench_torch.py export --dir $WORK/onnx \
  --models resnet50,yolov5s,bert_tiny > $OUT/export.log 2>&1 || echo "export failed"
since exported
timeout ${TEST_S:-240} python3 -m pytest -q -p no:cacheprovider -rfE \
  ${XDIST:+-n $XDIST --dist loadfile} ${TESTS:-test/cuda/test_green.py} > $OUT/test_cuda.log 2>&1
since tests
MODELS=()
for m in resnet50 yolov5s; do
  [ -f $WORK/onnx/$m.onnx ] && MODELS+=(--model $m=$WORK/onnx/$m.onnx)
done
[ -f $A/yolov3-tiny.cfg ] && MODELS+=(--model yolov3_tiny=$A/yolov3-tiny.cfg)
timeout ${BENCH_S:-200} python3 bench/bench_tx2_slice.py --out $OUT/tx2_slice_h200.json \
  --sms ${SMS:-8} --deadline-s $(( ${BENCH_S:-200} - 40 )) "${MODELS[@]}" \
  > $OUT/tx2_slice.log 2>&1
since tx2_slice
grep -E "FAILED|ERROR|passed|failed" $OUT/test_cuda.log | cut -c1-200 | tail -n 25
grep -E "eff|ms" $OUT/tx2_slice.log | cut -c1-240 | tail -n 12
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
