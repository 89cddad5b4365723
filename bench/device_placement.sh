#!/bin/bash
# One device call (issue 5 follow-up): placement timing + cold build, then in parallel the
# CUDA tests, the accuracy run and the node conformance. Carry .devdata/{whl,photos,refs.json,
# yolov8.tx2plan,open_nsfw.tx2plan,yolov3-tiny.tx2plan}. Logs and JSON under $OUT.
python3 -m pip install -q --no-index --no-deps --target /tmp/site .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD:$PYTHONPATH PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
T0=$(date +%s)
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/bench_torch.py export --dir /tmp/onnx --models yolov5s > $OUT/export.log 2>&1
echo "export $(( $(date +%s) - T0 )) s"
timeout ${TIME_S:-75} python3 bench/bench_placement.py $OUT/placement.json \
  --onnx yolov5s=/tmp/onnx/yolov5s.onnx --plan yolov8=.devdata/yolov8.tx2plan \
  > $OUT/placement.log 2>&1
echo "timing $(( $(date +%s) - T0 )) s"
python3 -c "from tx2_infer_core.cuda import compile as cc
cc.compile_all(['conv', 'elementwise', 'gemm', 'layernorm', 'pool', 'preprocess', 'resize',
 'softmax', 'yolo'] + ['conv_mma@CONV_MMA_TILE=%d' % t for t in (64064, 128064, 64128, 128128)],
 90)" || echo "prewarm failed"
echo "prewarm $(( $(date +%s) - T0 )) s"
P=${PAR_S:-95}
timeout $P python3 -m pytest -q -p no:cacheprovider test/cuda --deselect test/cuda/test_models.py \
  -k "not conformance" > $OUT/pytest.log 2>&1 &
timeout $P python3 bench/cuda_accuracy.py run .devdata $OUT/accuracy.json > $OUT/accuracy.log 2>&1 &
timeout $P python3 test/cuda/test_node_conformance_cuda.py $OUT/conformance.json \
  > $OUT/conformance.log 2>&1 &
wait
echo "all $(( $(date +%s) - T0 )) s"
grep -E "FAILED|ERROR|passed|failed" $OUT/pytest.log | tail -n 12
cut -c1-150 $OUT/accuracy.log | grep -v Warning | tail -n 8
grep -E "^(LayerNorm|ReduceMean|Concat|Split|total)" $OUT/conformance.log
tail -n 8 $OUT/placement.log
