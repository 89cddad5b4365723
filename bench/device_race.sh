#!/bin/bash
# The race of issue 12 item 4 in ONE device call (at most 9 minutes); carry .devdata (photos/,
# whl/ with the pycuda wheels). Results: one $OUT/race.tgz (JSON, markdown, logs).
#   bash bench/device_race.sh [fast]      ours + eager/CUDA graph/reduce-overhead, 3 rounds,
#                                          resnet50, yolov5s, bert_tiny (export included)
#   bash bench/device_race.sh ma [MODELS]  max-autotune with its own cap (MA_CAP, 480 s per
#                                          child), ours beside it; repeated only if it finished
# COMMIT and DIRTY (env) name what was measured. One model's max-autotune may need most of a
# call (ResNet-50's did not finish in 120 s on the H100): `ma resnet50` gives it the whole cap.
# Estimates (H100 log of c13d010, H200 build times): pip + unpack 10 s; export + FP32
# references 20 s; our builds (cold + warm + profile) 3 x 12 s; a torch fast child 40-80 s
# cold (reduce-overhead compile 8-18 s, torch import, cudnn benchmark, 3 x 350 calls) and
# less in rounds 2-3 (inductor's caches warm); an ours child 5-8 s. fast: ~6 min; the deadline
# (DEADLINE, 500 s) cuts what does not fit and the JSON notes it.
set -u
MODE=${1:-fast}
MODELS=${2:-$([ "$MODE" = ma ] && echo bert_tiny,yolov5s,resnet50 || echo resnet50,yolov5s,bert_tiny)}
T0=$(date +%s)
since() { echo "[$(( $(date +%s) - T0 )) s] $1"; }
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  .devdata/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader | tee $OUT/device.txt
since installed
COMMON=(--out-dir $OUT --work /tmp/race --photos .devdata/photos --real-models ''
        --torch-models $MODELS --commit ${COMMIT:-unknown} --dirty "${DIRTY:-}"
        --runs ${RUNS:-300} --warmup 50 --extras profile)
if [ "$MODE" = ma ]; then
  python3 bench/bench_cuda.py "${COMMON[@]}" --tag ma_h200 --phases ours,ma \
    --ma-cap ${MA_CAP:-480} --deadline-s ${DEADLINE:-500} 2>&1 | tee $OUT/race_ma.log
else
  python3 bench/bench_cuda.py "${COMMON[@]}" --tag race_h200 --phases ours,fast --repeats 3 \
    --fast-cap 150 --deadline-s ${DEADLINE:-500} 2>&1 | tee $OUT/race.log
fi
since "race $MODE done"
(cd $OUT && tar czf /tmp/race.tgz . && rm -rf ./* && mv /tmp/race.tgz .)
