#!/bin/bash
# bench_zoo --torch in one GPU call (issue 14 item 6): our CUDA FP16 engine beside torch eager
# and torch eager + CUDA graph (the zoo ONNX models converted by onnx2torch), rounds
# interleaved, on the models of one zoo pack (ZOO_PACK, default .zoo_torch). Made here:
#   python bench/zoo_data.py pack-names .zoo_torch a,b,...
#   mkdir -p .zoo_torch/whl && cp .devdata/whl/*.whl .zoo_torch/whl/ \
#     && pip download --no-deps onnx2torch -d .zoo_torch/whl     # pycuda + onnx2torch
# Carry .zoo_torch; there `bash bench/device_zoo_torch.sh`. MODELS (a,b,...): which models
# and their order (default: the pack, in ZOO order); the deadline cuts the last. TESTS: GPU
# test files run first (e.g. test/cuda/test_zoo_torch_cuda.py). BUDGET_S (470): seconds for
# the whole script; ZOO_ARGS: bench_zoo options (default --runs 100 --runs-cpu 10). Writes
# $OUT/zoo_TAG.{json,md} (TAG h200_torch, rewritten after each model) and zoo_torch.log.
set -u
T0=$(date +%s)
PACK=${ZOO_PACK:-.zoo_torch}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site \
  $PACK/whl/*.whl 2>&1 | grep -v "already exists" || true
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 TX2_INFER_CACHE=/tmp/tx2cache
python3 -c "import importlib.util as u, torch; print('torch', torch.__version__, 'cuda',
  torch.version.cuda, {m: bool(u.find_spec(m)) for m in ('torchvision', 'onnx2torch')})"
if [ -n "${TESTS:-}" ]; then
  TX2_INFER_ZOO_PACKED=$PWD/$PACK timeout ${TEST_S:-120} python3 -m pytest -q \
    -p no:cacheprovider -rfEs $TESTS > $OUT/tests.log 2>&1
  grep -E "FAILED|ERROR|SKIPPED|passed|failed" $OUT/tests.log | cut -c1-200 | tail -n 8
fi
LEFT=$(( ${BUDGET_S:-470} - $(date +%s) + T0 ))
echo "[$(( $(date +%s) - T0 )) s] bench_zoo --torch with ${LEFT} s"
timeout $LEFT python3 bench/bench_zoo.py --packed $PACK --backend cuda --torch \
  ${MODELS:+--models $MODELS} --out-dir $OUT --tag ${TAG:-h200_torch} \
  --deadline-s $(( LEFT - 60 )) ${ZOO_ARGS:---runs 100 --runs-cpu 10} > $OUT/zoo_torch.log 2>&1
grep -E "^\| " $OUT/zoo_torch.log | cut -c1-240 | tail -n 40
tail -n 3 $OUT/zoo_torch.log | cut -c1-240
ls $OUT
