#!/bin/bash
# Issue 12 item 3 in ONE device call: the TX2 conv path (conv_path simt) timed in an 8-SM slice
# of the GPU (a green context, cuda/green.py) and on the whole GPU, projected to a Jetson TX2
# (bench/bench_tx2_slice.py); first test/cuda/test_green.py (the slice runs on at most its SMs,
# a model in it matches the CPU oracle and the whole GPU). Carry .devdata (whl/ with the pycuda
# wheels; yolov8 and yolov3-tiny packed by `python bench/devdata.py pack .devdata`; photos/).
# ResNet-50 and YOLOv5s are exported here (bench/torch_models.py, random weights: latency does
# not depend on them). Results: $OUT/results.tgz (tx2_slice_h200.json, logs).
#   bash bench/device_tx2.sh        env: SMS (slice size, 8), EXPORT_S, TEST_S, BENCH_S (caps)
# Estimates (H200): pip + unpack 20 s, export 30 s, tests 40 s (cold kernel builds), bench
# 90-150 s (its deadline, BENCH_S - 60 s, skips the models it would not reach).
set -u
T0=$(date +%s)
since() { echo "[$(( $(date +%s) - T0 )) s] $1"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader \
  | tee $OUT/device.txt
python3 bench/devdata.py unpack .devdata /tmp/tx2cache/assets || exit 1
since unpacked
WORK=/tmp/tx2 A=/tmp/tx2cache/assets
timeout ${EXPORT_S:-150} python3 bench/bench_torch.py export --dir $WORK/onnx \
  --models resnet50,yolov5s > $OUT/export.log 2>&1 || echo "export failed: see export.log"
since exported
timeout ${TEST_S:-150} python3 -m pytest -q -s -p no:cacheprovider -rA test/cuda/test_green.py \
  > $OUT/test_green.log 2>&1
since tested
MODELS=()
for m in resnet50 yolov5s; do
  [ -f $WORK/onnx/$m.onnx ] && MODELS+=(--model $m=$WORK/onnx/$m.onnx)
done
[ -f $A/yolov3-tiny.cfg ] && MODELS+=(--model yolov3_tiny=$A/yolov3-tiny.cfg)
[ -f $A/yolov8-fall.onnx ] && MODELS+=(--model yolov8=$A/yolov8-fall.onnx --size yolov8=640)
timeout ${BENCH_S:-240} python3 bench/bench_tx2_slice.py --out $OUT/tx2_slice_h200.json \
  --sms ${SMS:-8} --deadline-s $(( ${BENCH_S:-240} - 60 )) "${MODELS[@]}" \
  > $OUT/tx2_slice.log 2>&1
since bench
grep -E "FAILED|ERROR|passed|failed|distinct SMs|MHz" $OUT/test_green.log | cut -c1-200 | tail -n 12
tail -n 8 $OUT/tx2_slice.log | cut -c1-240
(cd $OUT && tar czf /tmp/results.tgz . && rm -rf ./* && mv /tmp/results.tgz .)
